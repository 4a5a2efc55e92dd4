// Address generator of a sparse (CSR) projection (docs/formats/fpga.md, "csr"): the stored synapses of one
// spiking source, one per clock cycle.
//
// Storage from byte address w_base (even) of the synapse memory, read as aligned 16-bit words:
//     word w_base/2 + j        (j = 0 .. src_len)   row pointer: the first synapse of source j's row, counted
//                                                   from the first synapse; row j ends where row j + 1 begins
//     word pair_base/2 + s     (pair_base = w_base + 2 * (src_len + 1))   synapse s: bits 0-7 the int8 weight,
//                                                   bits 8-15 the destination step
// A row lists its destinations in increasing order as steps: the first synapse reaches dst_base + step, every
// further one the previous destination + step (a gap over 255 is bridged by synapses of weight 0).
//     rows:   ptr(j) at cycle 1, ptr(j + 1) at cycle 2 (registered reads), the first synapse read at cycle 3
//     pairs:  synapse s arrives while s + 1 is read: one synapse per cycle
// `valid` holds a (destination, weight) pair in the cycle it is issued (combinational from the memory's output);
// `done` is high with the last pair (or alone, for an empty row), after which the generator is idle.
`default_nettype none
module nmc_csr_addr (
    input  wire         clk,
    input  wire         rst,
    input  wire         start,          // latch `index` and begin (only while not busy)
    input  wire [15:0]  index,          // the spiking source, relative to the projection's source base
    input  wire [15:0]  src_len,
    input  wire [23:0]  w_base,         // byte address of the row pointers (even)
    input  wire [15:0]  dst_base,
    output reg  [23:0]  rd_addr,        // byte address of the 16-bit word to read (even)
    input  wire [15:0]  rd_word,        // the word read at rd_addr one cycle earlier
    output wire         valid,
    output wire [15:0]  dst_addr,
    output wire [7:0]   weight,
    output wire         done,
    output wire         busy
);
    localparam [2:0] G_IDLE = 3'd0, G_PTR0 = 3'd1, G_PTR1 = 3'd2, G_PTR2 = 3'd3, G_RUN = 3'd4;
    reg [2:0]  state;
    assign busy = (state != G_IDLE);

    reg [15:0] j;                 // the source
    reg [15:0] first;             // its row's first synapse
    reg [15:0] next;              // the next synapse to read
    reg [15:0] row_end;           // one past its last synapse
    reg [15:0] dst;               // destination of the last synapse issued (dst_base before the first)

    wire [23:0] pair_base = w_base + 24'({src_len, 1'b0}) + 24'd2;
    wire [15:0] step = {8'd0, rd_word[15:8]};
    wire        last = (next == row_end);       // in G_RUN: the synapse arriving is the row's last

    assign valid    = (state == G_RUN);
    assign dst_addr = dst + step;
    assign weight   = rd_word[7:0];
    assign done     = (state == G_RUN && last) || (state == G_PTR2 && rd_word == first);

    always @* begin
        case (state)
            G_PTR0:  rd_addr = w_base + 24'({j, 1'b0});
            G_PTR1:  rd_addr = w_base + 24'({j, 1'b0}) + 24'd2;
            G_PTR2:  rd_addr = pair_base + 24'({first, 1'b0});
            default: rd_addr = pair_base + 24'({next, 1'b0});
        endcase
    end

    always @(posedge clk) begin
        if (rst) state <= G_IDLE;
        else case (state)
            G_IDLE: if (start) begin j <= index; dst <= dst_base; state <= G_PTR0; end
            G_PTR0: state <= G_PTR1;
            G_PTR1: begin first <= rd_word; state <= G_PTR2; end          // ptr(j)
            G_PTR2: begin                                                   // ptr(j + 1); synapse `first` is read
                row_end <= rd_word;
                next <= first + 16'd1;
                state <= (rd_word == first) ? G_IDLE : G_RUN;
            end
            G_RUN: begin                                                    // synapse next - 1 arrives
                dst <= dst_addr;
                next <= next + 16'd1;
                if (last) state <= G_IDLE;
            end
            default: state <= G_IDLE;
        endcase
    end
endmodule
`default_nettype wire
