// Host interface of the nmcompile FPGA emulator: UART frames in, frames out (docs/formats/fpga-uart.md).
//
//   host -> core:  A5 | cmd | len (2, LE) | payload (len bytes) | crc (2, LE)
//   core -> host:  5A | code | len (2, LE) | payload (len bytes) | crc (2, LE)
//   crc: CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF) over cmd/code, len and payload.
//
// Commands: 01 INFO, 02 WRITE, 03 READ, 04 RESET, 05 INJECT, 06 RUN, 07 STREAM. A frame is answered once it is
// complete: code cmd|0x80 on success (RUN and STREAM answer with one 0x86 SPIKES frame per step, then 0x87 DONE),
// or FF with payload (cmd, status) on an error. Outside a stream one command runs at a time: bytes that arrive
// while a command executes are dropped.
// STREAM: the receiver stays open while the run is under way. INJECT frames are queued (answered 0x85 between the
// SPIKES frames), each step starts only once its input bitmap is queued, RESET stops the stream (the step under
// way finishes and its SPIKES frame is sent, then the core resets and 0x84 answers), any other command is refused
// (status 6). A host keeps at most QSTEPS steps injected and not yet answered by SPIKES (credit flow control).
// A frame whose bytes stop arriving for TIMEOUT cycles is abandoned.
// A frame takes effect only after its CRC checks: WRITE data (at most WRITE_BYTES bytes) is buffered and committed
// word by word once the CRC and every word's address are good; INJECT words are staged and committed likewise.
`default_nettype none
module nmc_host #(
    parameter integer N           = 64,
    parameter integer IN_WORDS    = 2,
    parameter integer SYN_DEPTH   = 4096,
    parameter integer P           = 8,
    parameter integer TRACE_DEPTH = 64,
    parameter integer QSTEPS      = 64,
    parameter integer TIMEOUT     = 1 << 20,
    parameter integer WRITE_BYTES = 1024,      // WRITE data bytes per frame (docs/formats/fpga-uart.md)
    parameter integer OUT_FIFO    = 256        // output bytes taken from the core ahead of the UART
) (
    input  wire         clk,
    input  wire         rst,
    input  wire         rx_valid,
    input  wire [7:0]   rx_byte,
    output reg          tx_start,
    output reg  [7:0]   tx_byte,
    input  wire         tx_ready,
    // core
    output reg          host_we,
    output reg          host_re,
    output reg  [2:0]   host_region,
    output reg  [23:0]  host_addr,
    output reg  [191:0] host_wdata,
    input  wire [191:0] host_rdata,
    input  wire         host_rvalid,
    output reg          inq_we,
    output reg  [31:0]  inq_wdata,
    output reg          inq_commit,
    output reg          inq_abort,
    input  wire [23:0]  inq_free_words,
    output reg          reset_req,
    output reg          run_req,
    output reg  [31:0]  run_steps,
    input  wire         core_idle,
    input  wire         run_done,
    input  wire [63:0]  run_cycles,
    input  wire [15:0]  cfg_out_len,
    input  wire         out_valid,
    input  wire [7:0]   out_byte,
    output reg          out_ready,
    output wire         idle
);
    localparam [7:0] SYNC_IN = 8'hA5, SYNC_OUT = 8'h5A, NAK = 8'hFF, VERSION = 8'd3;
    localparam [7:0] C_INFO = 8'h01, C_WRITE = 8'h02, C_READ = 8'h03, C_RESET = 8'h04, C_INJECT = 8'h05,
                     C_RUN = 8'h06, C_STREAM = 8'h07, R_SPIKES = 8'h86, R_DONE = 8'h87;
    localparam [7:0] S_CRC = 8'd1, S_UNKNOWN = 8'd2, S_LENGTH = 8'd3, S_ADDRESS = 8'd4, S_QUEUE_FULL = 8'd5,
                     S_BUSY = 8'd6;
    localparam integer TW = $clog2(TIMEOUT + 1);

    function automatic [15:0] crc_byte(input [15:0] crc, input [7:0] b);
        integer i;
        reg [15:0] c;
        begin
            c = crc ^ {b, 8'h00};
            for (i = 0; i < 8; i = i + 1) c = c[15] ? ((c << 1) ^ 16'h1021) : (c << 1);
            crc_byte = c;
        end
    endfunction

    function automatic [4:0] word_bytes(input [2:0] region);
        case (region)
            3'd0: word_bytes = 5'd1;    // SYN    int8 weight
            3'd1: word_bytes = 5'd13;   // PARAM  104-bit neuron group parameters
            3'd2: word_bytes = 5'd6;    // INIT   u_init, v_init (24 bits each)
            3'd3: word_bytes = 5'd24;   // PROJ   projection entry
            3'd4: word_bytes = 5'd4;    // CONST  constant-channel mask word
            3'd5: word_bytes = 5'd4;    // CONFIG register
            3'd6: word_bytes = 5'd7;    // STATE  u, v, refractory counter (read only)
            default: word_bytes = 5'd1; // TRACE  8-bit trace
        endcase
    endfunction

    function automatic [23:0] region_depth(input [2:0] region);
        case (region)
            3'd0: region_depth = 24'(SYN_DEPTH);
            3'd1, 3'd2, 3'd6: region_depth = 24'(N);
            3'd3: region_depth = 24'(P);
            3'd4: region_depth = 24'(IN_WORDS);
            3'd5: region_depth = 24'd4;
            default: region_depth = 24'(TRACE_DEPTH);
        endcase
    endfunction

    // INFO payload, 16 bytes LE: version, 0, N, IN_WORDS, SYN_DEPTH (4), P, TRACE_DEPTH, QSTEPS
    wire [127:0] info = {16'(QSTEPS), 16'(TRACE_DEPTH), 16'(P), 32'(SYN_DEPTH), 16'(IN_WORDS), 16'(N),
                         8'd0, VERSION};

    // receiver: parses frames; executor: runs them and sends the answers (both at once during a STREAM)
    localparam [2:0]
        R_SYNC = 3'd0, R_CMD = 3'd1, R_LEN0 = 3'd2, R_LEN1 = 3'd3, R_PAY = 3'd4, R_CRC0 = 3'd5, R_CRC1 = 3'd6,
        R_FRAME = 3'd7;
    localparam [4:0]
        X_IDLE = 5'd0, X_EXEC = 5'd1, X_WAIT_RESET = 5'd2, X_RUN = 5'd3, X_STREAM = 5'd4, X_COMMIT_RD = 5'd5,
        X_COMMIT_WR = 5'd6, T_SYNC = 5'd7, T_CODE = 5'd8, T_LEN0 = 5'd9, T_LEN1 = 5'd10, T_PAY = 5'd11,
        T_CRC0 = 5'd12, T_CRC1 = 5'd13, T_FETCH = 5'd14, T_FETCH_WAIT = 5'd15;
    localparam [2:0] K_ACK = 3'd0, K_NAK = 3'd1, K_INFO = 3'd2, K_READ = 3'd3, K_SPIKES = 3'd4, K_DONE = 3'd5;

    reg [2:0]   rstate;
    reg [4:0]   state;
    reg [7:0]   cmd;
    reg [15:0]  len, idx, crc, crc_rx;
    reg [7:0]   status;            // first error seen in this frame (0 = none)
    reg [TW-1:0] quiet;            // cycles since the last byte of an unfinished frame
    reg [2:0]   region;
    reg [23:0]  addr;
    reg [15:0]  count;
    reg [4:0]   wb;                // bytes of the current word received / sent
    reg [191:0] word;
    reg [15:0]  in_word_count;     // INJECT: words received modulo IN_WORDS
    reg [15:0]  frame_steps;       // INJECT: whole steps staged by this frame
    reg [31:0]  steps;
    reg [31:0]  frames_left;

    // input steps committed to the core's queue and steps that consumed (or will consume) one: their difference is
    // what the queue holds, mirrored here so that a stream starts a step only when its input is there
    reg [31:0]  steps_committed, steps_started;
    wire [31:0] steps_queued = steps_committed - steps_started;

    // stream
    reg         streaming, stream_stop, step_busy;
    reg [31:0]  stream_steps, steps_left, frames_issued, frames_sent, stream_inputs;
    reg [15:0]  acks_in, acks_out;  // INJECT answers owed: received vs sent
    reg         nak_pending;
    reg [63:0]  engine_cycles, stream_cycles;

    // WRITE buffer: the frame's data bytes, committed to the core after the CRC checks
    localparam integer WBA = $clog2(WRITE_BYTES);
    reg [7:0]   wbuf [0:WRITE_BYTES-1];
    reg [7:0]   wbyte;             // the buffered byte being committed
    reg [15:0]  cidx;              // next buffered byte to commit
    reg [23:0]  waddr;             // word address of the next committed word

    // responder
    reg [2:0]   kind;
    reg [7:0]   code;
    reg [15:0]  tlen, tidx, tcrc;
    reg [191:0] done_payload;
    reg [4:0]   tword_bytes;
    reg [7:0]   ncmd, nstatus;     // the refused command and why

    // output FIFO: the core's output bytes are taken as soon as they come, so the core computes the next step while
    // the UART still sends this one's SPIKES frame
    localparam integer OA = $clog2(OUT_FIFO);
    reg [7:0]   ofifo [0:OUT_FIFO-1];
    reg [OA-1:0] o_head, o_tail;
    reg [OA:0]  o_count;
    wire        o_push = out_valid && !out_ready && o_count != (OA+1)'(OUT_FIFO);
    wire        o_pop = state == T_PAY && kind == K_SPIKES && tx_ready && !tx_start && o_count != '0;

    assign idle = (state == X_IDLE) && (rstate == R_SYNC) && !streaming && tx_ready && !tx_start;

    wire [15:0] spikes_len = 16'd4 + ((cfg_out_len + 16'd7) >> 3);
    wire        rx_open = (state == X_IDLE) || streaming;       // a new frame may start
    wire        inject_bad_length = wb != 5'd0 || in_word_count != 16'd0 || len == 16'd0;

    // the next payload byte of the frame being sent, and whether it is available this cycle
    reg [7:0] pay_byte;
    reg       pay_ready;
    always @* begin
        pay_byte = 8'd0;
        pay_ready = 1'b1;
        case (kind)
            K_NAK:    pay_byte = (tidx == 16'd0) ? ncmd : nstatus;
            K_INFO:   pay_byte = info[8 * tidx[3:0] +: 8];
            K_READ:   pay_byte = word[8 * wb +: 8];
            K_SPIKES: begin pay_byte = ofifo[o_head]; pay_ready = o_count != '0; end
            K_DONE:   pay_byte = done_payload[8 * tidx[4:0] +: 8];
            default: ;
        endcase
    end

    task automatic send(input [7:0] b);
        begin
            tx_start <= 1'b1;
            tx_byte <= b;
        end
    endtask

    task automatic respond(input [2:0] k, input [7:0] c, input [15:0] l);
        begin
            kind <= k;
            code <= c;
            tlen <= l;
            state <= T_SYNC;
        end
    endtask

    task automatic refuse(input [7:0] why);        // answer FF (command, status)
        begin
            ncmd <= cmd;
            nstatus <= why;
            respond(K_NAK, NAK, 16'd2);
        end
    endtask

    always @(posedge clk) begin
        tx_start <= 1'b0;
        host_we <= 1'b0;
        host_re <= 1'b0;
        inq_we <= 1'b0;
        inq_commit <= 1'b0;
        inq_abort <= 1'b0;
        reset_req <= 1'b0;
        run_req <= 1'b0;
        out_ready <= o_push;
        if (o_push) begin
            ofifo[o_tail] <= out_byte;
            o_tail <= o_tail + 1'b1;
        end
        if (o_pop) o_head <= o_head + 1'b1;
        o_count <= o_count + (OA+1)'(o_push) - (OA+1)'(o_pop);
        if (rst) begin
            o_head <= '0;
            o_tail <= '0;
            o_count <= '0;
            rstate <= R_SYNC;
            state <= X_IDLE;
            quiet <= '0;
            streaming <= 1'b0;
            stream_stop <= 1'b0;
            step_busy <= 1'b0;
            nak_pending <= 1'b0;
            acks_in <= 16'd0;
            acks_out <= 16'd0;
            steps_committed <= 32'd0;
            steps_started <= 32'd0;
        end else begin
            // ---- receiver ------------------------------------------------------------------------------------
            // abandon a frame whose bytes stopped arriving
            if (rstate >= R_CMD && rstate <= R_CRC1 && !rx_valid) begin
                if (quiet == TW'(TIMEOUT)) begin
                    rstate <= R_SYNC;
                    inq_abort <= 1'b1;
                end else quiet <= quiet + 1'b1;
            end else quiet <= '0;
            case (rstate)
                R_SYNC: if (rx_valid && rx_byte == SYNC_IN && rx_open) begin
                    crc <= 16'hFFFF;
                    rstate <= R_CMD;
                end
                R_CMD: if (rx_valid) begin
                    cmd <= rx_byte;
                    crc <= crc_byte(crc, rx_byte);
                    rstate <= R_LEN0;
                end
                R_LEN0: if (rx_valid) begin
                    len[7:0] <= rx_byte;
                    crc <= crc_byte(crc, rx_byte);
                    rstate <= R_LEN1;
                end
                R_LEN1: if (rx_valid) begin
                    len[15:8] <= rx_byte;
                    crc <= crc_byte(crc, rx_byte);
                    idx <= 16'd0;
                    status <= 8'd0;
                    wb <= 5'd0;
                    word <= '0;
                    in_word_count <= 16'd0;
                    frame_steps <= 16'd0;
                    inq_abort <= 1'b1;            // drop anything staged by an abandoned frame
                    rstate <= ({rx_byte, len[7:0]} == 16'd0) ? R_CRC0 : R_PAY;
                end
                R_PAY: if (rx_valid) begin
                    crc <= crc_byte(crc, rx_byte);
                    idx <= idx + 16'd1;
                    if (idx == len - 16'd1) rstate <= R_CRC0;
                    case (cmd)
                        C_WRITE, C_READ: begin
                            if (idx == 16'd0) begin
                                region <= rx_byte[2:0];
                                if (rx_byte > 8'd7) status <= S_ADDRESS;
                            end
                            else if (idx <= 16'd3) addr[8 * (32'(idx) - 1) +: 8] <= rx_byte;
                            else if (cmd == C_READ) begin
                                if (idx == 16'd4) count[7:0] <= rx_byte;
                                else if (idx == 16'd5) count[15:8] <= rx_byte;
                            end else begin                  // WRITE data: checked and buffered, not yet written
                                if (idx == 16'd4) waddr <= addr;
                                if (idx == 16'd4 && region == 3'd6 && status == 8'd0)
                                    status <= S_ADDRESS;                    // STATE is read only
                                if (wb == word_bytes(region) - 5'd1) begin
                                    wb <= 5'd0;
                                    addr <= addr + 24'd1;
                                    if ((addr >= region_depth(region) || region == 3'd6) && status == 8'd0)
                                        status <= S_ADDRESS;
                                end else wb <= wb + 5'd1;
                                if (32'(idx) - 32'd4 >= 32'(WRITE_BYTES)) begin
                                    if (status == 8'd0) status <= S_LENGTH; // more than the buffer holds
                                end else wbuf[WBA'(idx - 16'd4)] <= rx_byte;
                            end
                        end
                        C_RUN, C_STREAM: steps[8 * idx[1:0] +: 8] <= rx_byte;
                        C_INJECT: begin
                            word[8 * wb +: 8] <= rx_byte;
                            if (wb == 5'd3) begin
                                wb <= 5'd0;
                                in_word_count <= (in_word_count == 16'(IN_WORDS - 1)) ? 16'd0 : in_word_count + 16'd1;
                                if (inq_free_words == 24'd0) begin
                                    if (status == 8'd0) status <= S_QUEUE_FULL;
                                end else if (status == 8'd0) begin
                                    inq_we <= 1'b1;
                                    inq_wdata <= {rx_byte, word[23:0]};
                                    if (in_word_count == 16'(IN_WORDS - 1)) frame_steps <= frame_steps + 16'd1;
                                end
                            end else wb <= wb + 5'd1;
                        end
                        default: ;
                    endcase
                end
                R_CRC0: if (rx_valid) begin
                    crc_rx[7:0] <= rx_byte;
                    rstate <= R_CRC1;
                end
                R_CRC1: if (rx_valid) begin
                    crc_rx[15:8] <= rx_byte;
                    rstate <= R_FRAME;
                end
                R_FRAME: if (streaming) begin           // during a stream the receiver answers for itself
                    rstate <= R_SYNC;
                    if (crc_rx != crc || cmd != C_INJECT || stream_stop || inject_bad_length || status != 8'd0)
                        inq_abort <= 1'b1;
                    if (crc_rx == crc && cmd == C_RESET && len == 16'd0) stream_stop <= 1'b1;
                    else if (crc_rx == crc && cmd == C_INJECT && !stream_stop && !inject_bad_length
                             && status == 8'd0) begin
                        inq_commit <= 1'b1;
                        steps_committed <= steps_committed + 32'(frame_steps);
                        stream_inputs <= stream_inputs + 32'(frame_steps);
                        acks_in <= acks_in + 16'd1;
                    end else if (!nak_pending) begin   // the first refusal is answered; the host stops there
                        nak_pending <= 1'b1;
                        ncmd <= cmd;
                        nstatus <= (crc_rx != crc) ? S_CRC : (cmd != C_INJECT || stream_stop) ? S_BUSY
                                   : (inject_bad_length && status == 8'd0) ? S_LENGTH : status;
                    end
                end else if (state == X_IDLE) begin
                    rstate <= R_SYNC;
                    state <= X_EXEC;
                end
                default: rstate <= R_SYNC;
            endcase

            // ---- stream: a step starts once its input is queued ---------------------------------------------
            if (streaming && !stream_stop && !step_busy && !run_req && core_idle && steps_queued != 32'd0
                && steps_left != 32'd0) begin
                run_req <= 1'b1;
                run_steps <= 32'd1;
                step_busy <= 1'b1;
                steps_started <= steps_started + 32'd1;
                steps_left <= steps_left - 32'd1;
                frames_issued <= frames_issued + 32'd1;
            end
            if (step_busy && !run_req && core_idle && run_done) begin
                step_busy <= 1'b0;
                engine_cycles <= engine_cycles + run_cycles;
            end
            if (streaming) stream_cycles <= stream_cycles + 64'd1;

            // ---- executor and responder ----------------------------------------------------------------------
            case (state)
                X_IDLE: ;
                X_EXEC: begin
                    if (crc_rx != crc) begin
                        inq_abort <= 1'b1;
                        refuse(S_CRC);
                    end else begin
                        case (cmd)
                            C_INFO: if (len != 16'd0) refuse(S_LENGTH);
                                    else respond(K_INFO, C_INFO | 8'h80, 16'd16);
                            C_WRITE: begin
                                if (len < 16'd4 || wb != 5'd0) refuse(S_LENGTH);
                                else if (status != 8'd0) refuse(status);
                                else if (len == 16'd4) respond(K_ACK, C_WRITE | 8'h80, 16'd0);
                                else begin                 // CRC and addresses good: commit the buffered words
                                    cidx <= 16'd0;
                                    word <= '0;
                                    state <= X_COMMIT_RD;
                                end
                            end
                            C_READ: begin
                                if (len != 16'd6 || count == 16'd0
                                    || 32'(count) * 32'(word_bytes(region)) > 32'hFFFF) refuse(S_LENGTH);
                                else if (status != 8'd0
                                         || 25'(addr) + 25'(count) > 25'(region_depth(region))) refuse(S_ADDRESS);
                                else begin
                                    wb <= 5'd0;
                                    tword_bytes <= word_bytes(region);
                                    kind <= K_READ;
                                    code <= C_READ | 8'h80;
                                    tlen <= 16'(32'(count) * 32'(word_bytes(region)));
                                    state <= T_SYNC;
                                end
                            end
                            C_RESET: if (len != 16'd0) refuse(S_LENGTH);
                                     else begin
                                         reset_req <= 1'b1;
                                         steps_started <= steps_committed;     // the core empties its queue
                                         state <= X_WAIT_RESET;
                                     end
                            C_INJECT: begin
                                if (inject_bad_length) begin
                                    inq_abort <= 1'b1;
                                    refuse(status == 8'd0 ? S_LENGTH : status);
                                end else if (status != 8'd0) begin
                                    inq_abort <= 1'b1;
                                    refuse(status);
                                end else begin
                                    inq_commit <= 1'b1;
                                    steps_committed <= steps_committed + 32'(frame_steps);
                                    respond(K_ACK, C_INJECT | 8'h80, 16'd0);
                                end
                            end
                            C_RUN: if (len != 16'd4) refuse(S_LENGTH);
                                   else begin
                                       run_req <= 1'b1;
                                       run_steps <= steps;
                                       frames_left <= steps;
                                       // each step takes a queued bitmap while there is one
                                       steps_started <= steps_started + ((steps_queued > steps) ? steps
                                                                                               : steps_queued);
                                       state <= X_RUN;
                                   end
                            C_STREAM: if (len != 16'd4) refuse(S_LENGTH);
                                      else begin
                                          streaming <= 1'b1;
                                          stream_stop <= 1'b0;
                                          stream_steps <= steps;
                                          steps_left <= steps;
                                          frames_issued <= 32'd0;
                                          frames_sent <= 32'd0;
                                          stream_inputs <= 32'd0;
                                          engine_cycles <= 64'd0;
                                          stream_cycles <= 64'd0;
                                          state <= X_STREAM;
                                      end
                            default: refuse(S_UNKNOWN);
                        endcase
                    end
                end
                X_COMMIT_RD: begin       // WRITE commit: one buffered byte per two cycles, a host write per word
                    wbyte <= wbuf[WBA'(cidx)];
                    state <= X_COMMIT_WR;
                end
                X_COMMIT_WR: begin
                    word[8 * wb +: 8] <= wbyte;
                    cidx <= cidx + 16'd1;
                    state <= X_COMMIT_RD;
                    if (wb == word_bytes(region) - 5'd1) begin
                        wb <= 5'd0;
                        waddr <= waddr + 24'd1;
                        host_we <= 1'b1;
                        host_region <= region;
                        host_addr <= waddr;
                        host_wdata <= (word & ~(192'hFF << (8 * wb))) | (192'(wbyte) << (8 * wb));
                    end else wb <= wb + 5'd1;
                    if (cidx == len - 16'd5) respond(K_ACK, C_WRITE | 8'h80, 16'd0);
                end
                X_WAIT_RESET: if (core_idle && !reset_req) respond(K_ACK, C_RESET | 8'h80, 16'd0);
                X_RUN: begin            // one SPIKES frame per step, then DONE
                    if (run_req) ;      // the core sees the request this cycle
                    else if (frames_left != 32'd0) respond(K_SPIKES, R_SPIKES, spikes_len);
                    else if (run_done && core_idle) begin
                        done_payload <= 192'({run_cycles, steps});
                        respond(K_DONE, R_DONE, 16'd12);
                    end
                end
                X_STREAM: begin         // between frames: a refusal, INJECT answers, SPIKES of started steps, DONE
                    if (nak_pending) begin
                        nak_pending <= 1'b0;
                        respond(K_NAK, NAK, 16'd2);
                    end else if (acks_in != acks_out) begin
                        acks_out <= acks_out + 16'd1;
                        respond(K_ACK, C_INJECT | 8'h80, 16'd0);
                    end else if (frames_issued != frames_sent) respond(K_SPIKES, R_SPIKES, spikes_len);
                    else if (!step_busy && !run_req && core_idle) begin
                        if (stream_stop) begin                      // RESET during the stream
                            streaming <= 1'b0;
                            stream_stop <= 1'b0;
                            reset_req <= 1'b1;
                            steps_started <= steps_committed;
                            state <= X_WAIT_RESET;
                        end else if (steps_left == 32'd0) begin
                            streaming <= 1'b0;
                            done_payload <= {stream_cycles, stream_inputs, engine_cycles, stream_steps};
                            respond(K_DONE, R_DONE, 16'd24);
                        end
                    end
                end
                // ---- responder ------------------------------------------------------------------------------
                T_SYNC: if (tx_ready && !tx_start) begin
                    send(SYNC_OUT);
                    tcrc <= crc_byte(16'hFFFF, code);
                    state <= T_CODE;
                end
                T_CODE: if (tx_ready && !tx_start) begin
                    send(code);
                    tcrc <= crc_byte(tcrc, tlen[7:0]);
                    state <= T_LEN0;
                end
                T_LEN0: if (tx_ready && !tx_start) begin
                    send(tlen[7:0]);
                    tcrc <= crc_byte(tcrc, tlen[15:8]);
                    state <= T_LEN1;
                end
                T_LEN1: if (tx_ready && !tx_start) begin
                    send(tlen[15:8]);
                    tidx <= 16'd0;
                    state <= (tlen == 16'd0) ? T_CRC0 : ((kind == K_READ) ? T_FETCH : T_PAY);
                end
                T_FETCH: begin           // READ: fetch the next word from the core
                    host_re <= 1'b1;
                    host_region <= region;
                    host_addr <= addr;
                    state <= T_FETCH_WAIT;
                end
                T_FETCH_WAIT: if (host_rvalid) begin
                    word <= host_rdata;
                    wb <= 5'd0;
                    addr <= addr + 24'd1;
                    state <= T_PAY;
                end
                T_PAY: if (tx_ready && !tx_start && pay_ready) begin
                    send(pay_byte);
                    tcrc <= crc_byte(tcrc, pay_byte);
                    tidx <= tidx + 16'd1;
                    if (kind == K_READ) wb <= wb + 5'd1;
                    if (tidx == tlen - 16'd1) state <= T_CRC0;
                    else if (kind == K_READ && wb == tword_bytes - 5'd1) state <= T_FETCH;
                end
                T_CRC0: if (tx_ready && !tx_start) begin
                    send(tcrc[7:0]);
                    state <= T_CRC1;
                end
                T_CRC1: if (tx_ready && !tx_start) begin
                    send(tcrc[15:8]);
                    if (kind == K_SPIKES) frames_sent <= frames_sent + 32'd1;
                    if (kind == K_SPIKES && !streaming) begin
                        frames_left <= frames_left - 32'd1;
                        state <= X_RUN;
                    end else state <= streaming ? X_STREAM : X_IDLE;
                end
                default: state <= X_IDLE;
            endcase
        end
    end
endmodule
`default_nettype wire
