// Host interface of the nmcompile FPGA emulator: UART frames in, frames out (docs/formats/fpga-uart.md).
//
//   host -> core:  A5 | cmd | len (2, LE) | payload (len bytes) | crc (2, LE)
//   core -> host:  5A | code | len (2, LE) | payload (len bytes) | crc (2, LE)
//   crc: CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF) over cmd/code, len and payload.
//
// Commands: 01 INFO, 02 WRITE, 03 READ, 04 RESET, 05 INJECT, 06 RUN. A frame is answered once it is complete:
// code cmd|0x80 on success (RUN answers with one 0x86 SPIKES frame per step, then 0x87 DONE), or FF with payload
// (cmd, status) on an error. One command at a time: bytes that arrive while a command executes are dropped.
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
    parameter integer WRITE_BYTES = 1024       // WRITE data bytes per frame (docs/formats/fpga-uart.md)
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
    localparam [7:0] SYNC_IN = 8'hA5, SYNC_OUT = 8'h5A, NAK = 8'hFF, VERSION = 8'd2;
    localparam [7:0] C_INFO = 8'h01, C_WRITE = 8'h02, C_READ = 8'h03, C_RESET = 8'h04, C_INJECT = 8'h05,
                     C_RUN = 8'h06, R_SPIKES = 8'h86, R_DONE = 8'h87;
    localparam [7:0] S_CRC = 8'd1, S_UNKNOWN = 8'd2, S_LENGTH = 8'd3, S_ADDRESS = 8'd4, S_QUEUE_FULL = 8'd5;
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

    localparam [4:0]
        R_SYNC = 5'd0, R_CMD = 5'd1, R_LEN0 = 5'd2, R_LEN1 = 5'd3, R_PAY = 5'd4, R_CRC0 = 5'd5, R_CRC1 = 5'd6,
        R_EXEC = 5'd7, R_WAIT_RESET = 5'd8, T_SYNC = 5'd9, T_CODE = 5'd10, T_LEN0 = 5'd11, T_LEN1 = 5'd12,
        T_PAY = 5'd13, T_CRC0 = 5'd14, T_CRC1 = 5'd15, T_FETCH = 5'd16, T_FETCH_WAIT = 5'd17, R_RUN = 5'd18,
        R_COMMIT_RD = 5'd19, R_COMMIT_WR = 5'd20;
    localparam [2:0] K_ACK = 3'd0, K_NAK = 3'd1, K_INFO = 3'd2, K_READ = 3'd3, K_SPIKES = 3'd4, K_DONE = 3'd5;

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
    reg [31:0]  steps;
    reg [31:0]  frames_left;

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
    reg [95:0]  done_payload;
    reg [4:0]   tword_bytes;

    assign idle = (state == R_SYNC) && tx_ready && !tx_start;

    wire [15:0] spikes_len = 16'd4 + ((cfg_out_len + 16'd7) >> 3);

    // the next payload byte of the frame being sent, and whether it is available this cycle
    reg [7:0] pay_byte;
    reg       pay_ready;
    always @* begin
        pay_byte = 8'd0;
        pay_ready = 1'b1;
        case (kind)
            K_NAK:    pay_byte = (tidx == 16'd0) ? cmd : status;
            K_INFO:   pay_byte = info[8 * tidx[3:0] +: 8];
            K_READ:   pay_byte = word[8 * wb +: 8];
            K_SPIKES: begin pay_byte = out_byte; pay_ready = out_valid; end
            K_DONE:   pay_byte = done_payload[8 * tidx[3:0] +: 8];
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

    always @(posedge clk) begin
        tx_start <= 1'b0;
        host_we <= 1'b0;
        host_re <= 1'b0;
        inq_we <= 1'b0;
        inq_commit <= 1'b0;
        inq_abort <= 1'b0;
        reset_req <= 1'b0;
        run_req <= 1'b0;
        out_ready <= 1'b0;
        if (rst) begin
            state <= R_SYNC;
            quiet <= '0;
        end else begin
            // abandon a frame whose bytes stopped arriving
            if (state >= R_CMD && state <= R_CRC1 && !rx_valid) begin
                if (quiet == TW'(TIMEOUT)) begin
                    state <= R_SYNC;
                    inq_abort <= 1'b1;
                end else quiet <= quiet + 1'b1;
            end else quiet <= '0;
            case (state)
                R_SYNC: if (rx_valid && rx_byte == SYNC_IN) begin
                    crc <= 16'hFFFF;
                    state <= R_CMD;
                end
                R_CMD: if (rx_valid) begin
                    cmd <= rx_byte;
                    crc <= crc_byte(crc, rx_byte);
                    state <= R_LEN0;
                end
                R_LEN0: if (rx_valid) begin
                    len[7:0] <= rx_byte;
                    crc <= crc_byte(crc, rx_byte);
                    state <= R_LEN1;
                end
                R_LEN1: if (rx_valid) begin
                    len[15:8] <= rx_byte;
                    crc <= crc_byte(crc, rx_byte);
                    idx <= 16'd0;
                    status <= 8'd0;
                    wb <= 5'd0;
                    word <= '0;
                    in_word_count <= 16'd0;
                    inq_abort <= 1'b1;            // drop anything staged by an abandoned frame
                    state <= ({rx_byte, len[7:0]} == 16'd0) ? R_CRC0 : R_PAY;
                end
                R_PAY: if (rx_valid) begin
                    crc <= crc_byte(crc, rx_byte);
                    idx <= idx + 16'd1;
                    if (idx == len - 16'd1) state <= R_CRC0;
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
                        C_RUN: steps[8 * idx[1:0] +: 8] <= rx_byte;
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
                                end
                            end else wb <= wb + 5'd1;
                        end
                        default: ;
                    endcase
                end
                R_CRC0: if (rx_valid) begin
                    crc_rx[7:0] <= rx_byte;
                    state <= R_CRC1;
                end
                R_CRC1: if (rx_valid) begin
                    crc_rx[15:8] <= rx_byte;
                    state <= R_EXEC;
                end
                R_EXEC: begin
                    if (crc_rx != crc) begin
                        status <= S_CRC;
                        inq_abort <= 1'b1;
                        respond(K_NAK, NAK, 16'd2);
                    end else begin
                        case (cmd)
                            C_INFO: if (len != 16'd0) begin status <= S_LENGTH; respond(K_NAK, NAK, 16'd2); end
                                    else respond(K_INFO, C_INFO | 8'h80, 16'd16);
                            C_WRITE: begin
                                if (len < 16'd4 || wb != 5'd0) begin
                                    status <= S_LENGTH;
                                    respond(K_NAK, NAK, 16'd2);
                                end else if (status != 8'd0) respond(K_NAK, NAK, 16'd2);
                                else if (len == 16'd4) respond(K_ACK, C_WRITE | 8'h80, 16'd0);
                                else begin                 // CRC and addresses good: commit the buffered words
                                    cidx <= 16'd0;
                                    word <= '0;
                                    state <= R_COMMIT_RD;
                                end
                            end
                            C_READ: begin
                                if (len != 16'd6 || count == 16'd0
                                    || 32'(count) * 32'(word_bytes(region)) > 32'hFFFF) begin
                                    status <= S_LENGTH;
                                    respond(K_NAK, NAK, 16'd2);
                                end else if (status != 8'd0
                                             || 25'(addr) + 25'(count) > 25'(region_depth(region))) begin
                                    status <= S_ADDRESS;
                                    respond(K_NAK, NAK, 16'd2);
                                end else begin
                                    wb <= 5'd0;
                                    tword_bytes <= word_bytes(region);
                                    kind <= K_READ;
                                    code <= C_READ | 8'h80;
                                    tlen <= 16'(32'(count) * 32'(word_bytes(region)));
                                    state <= T_SYNC;
                                end
                            end
                            C_RESET: if (len != 16'd0) begin status <= S_LENGTH; respond(K_NAK, NAK, 16'd2); end
                                     else begin reset_req <= 1'b1; state <= R_WAIT_RESET; end
                            C_INJECT: begin
                                if (wb != 5'd0 || in_word_count != 16'd0 || len == 16'd0) begin
                                    inq_abort <= 1'b1;
                                    if (status == 8'd0) status <= S_LENGTH;
                                    respond(K_NAK, NAK, 16'd2);
                                end else if (status != 8'd0) begin
                                    inq_abort <= 1'b1;
                                    respond(K_NAK, NAK, 16'd2);
                                end else begin
                                    inq_commit <= 1'b1;
                                    respond(K_ACK, C_INJECT | 8'h80, 16'd0);
                                end
                            end
                            C_RUN: if (len != 16'd4) begin status <= S_LENGTH; respond(K_NAK, NAK, 16'd2); end
                                   else begin
                                       run_req <= 1'b1;
                                       run_steps <= steps;
                                       frames_left <= steps;
                                       state <= R_RUN;
                                   end
                            default: begin status <= S_UNKNOWN; respond(K_NAK, NAK, 16'd2); end
                        endcase
                    end
                end
                R_COMMIT_RD: begin       // WRITE commit: one buffered byte per two cycles, a host write per word
                    wbyte <= wbuf[WBA'(cidx)];
                    state <= R_COMMIT_WR;
                end
                R_COMMIT_WR: begin
                    word[8 * wb +: 8] <= wbyte;
                    cidx <= cidx + 16'd1;
                    state <= R_COMMIT_RD;
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
                R_WAIT_RESET: if (core_idle && !reset_req) respond(K_ACK, C_RESET | 8'h80, 16'd0);
                R_RUN: begin            // one SPIKES frame per step, then DONE
                    if (run_req) ;      // the core sees the request this cycle
                    else if (frames_left != 32'd0) respond(K_SPIKES, R_SPIKES, spikes_len);
                    else if (run_done && core_idle) begin
                        done_payload <= {run_cycles, steps};
                        respond(K_DONE, R_DONE, 16'd12);
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
                    if (kind == K_SPIKES) out_ready <= 1'b1;
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
                    if (kind == K_SPIKES) begin
                        frames_left <= frames_left - 32'd1;
                        state <= R_RUN;
                    end else state <= R_SYNC;
                end
                default: state <= R_SYNC;
            endcase
        end
    end
endmodule
`default_nettype wire
