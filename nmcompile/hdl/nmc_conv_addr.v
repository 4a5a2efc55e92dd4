// Address generator of a convolution projection stored as its kernel (docs/formats/fpga.md, "conv entries").
//
// For one spiking source i (offset in the projection's source range, C-order over (C_in, H, W)) it emits, one per
// clock cycle, every (weight address, destination neuron) pair the spike reaches: PyTorch cross-correlation with
// zero padding, groups = 1, dilation 1, strides 2^sy, 2^sx. With ty = y + pad_y, the taps that reach an output
// row are ky = ty - oy * 2^sy for 0 <= oy < H_out and 0 <= ky < K_h, i.e. ky runs from
//     ky0 = ty - (H_out - 1) * 2^sy  if that is >= 0, else ty mod 2^sy,   to   min(K_h - 1, ty)   in steps of 2^sy
// (the same along x). The source is split as c = i / (H * W), r = i - c * H * W, y = r / W, x = r - y * W with
// the compiler's reciprocals: q = (i * m) >> s is exact for every i of the source range (checked at compile time).
//     weight  = w_base + o * (C_in * K_h * K_w) + c * K_h * K_w + ky * K_w + kx
//     neuron  = dst_base + o * H_out * W_out + oy * W_out + ox
// Output order: o, then ky, then kx. `valid` holds a pair in the cycle it is issued.
// Two units overlap: the set-up of a spike (split and tap ranges, 3 cycles) runs while the pairs of the previous
// spike are issued, so a spike with at least 4 pairs costs no cycle of its own. `ready`: a new spike may start (the
// set-up unit is free or hands its spike over in this cycle); `busy`: a spike is being set up, waits, or has pairs
// left.
`default_nettype none
module nmc_conv_addr (
    input  wire         clk,
    input  wire         rst,
    input  wire         start,          // latch `index` and begin (only while not busy)
    input  wire [15:0]  index,          // the spiking source, relative to the projection's source base
    input  wire [191:0] geometry,       // the second table entry of the projection
    input  wire [23:0]  w_base,
    input  wire [15:0]  dst_base,
    output reg          valid,
    output reg  [23:0]  w_addr,
    output reg  [15:0]  dst_addr,
    output wire         ready,
    output wire         busy
);
    // ---- geometry fields (docs/formats/fpga.md) ------------------------------------------------------------
    wire [16:0] m_hw    = geometry[16:0];
    wire [5:0]  s_hw    = geometry[22:17];
    wire [16:0] m_w     = geometry[40:24];
    wire [5:0]  s_w     = geometry[46:41];
    wire [15:0] hw      = geometry[63:48];
    wire [15:0] in_w    = geometry[79:64];
    wire [15:0] out_w   = geometry[95:80];
    wire [15:0] out_hw  = geometry[111:96];
    wire [15:0] out_h   = geometry[127:112];
    wire [4:0]  k_h     = geometry[132:128];
    wire [4:0]  k_w     = geometry[137:133];
    wire [1:0]  sy      = geometry[139:138];
    wire [1:0]  sx      = geometry[141:140];
    wire [4:0]  pad_y   = geometry[148:144];
    wire [4:0]  pad_x   = geometry[153:149];
    wire [9:0]  kk      = geometry[163:154];
    wire [9:0]  c_out   = geometry[173:164];
    wire [15:0] ocs     = geometry[191:176];
    /* verilator lint_off UNUSEDSIGNAL */
    wire [5:0]  unused_bits = {geometry[23], geometry[47], geometry[143:142], geometry[175:174]};
    /* verilator lint_on UNUSEDSIGNAL */

    // set-up unit: split the index, then the tap ranges; S_READY holds the spike until the issue unit takes it
    localparam [1:0] S_IDLE = 2'd0, S_SPLIT_C = 2'd1, S_SPLIT_Y = 2'd2, S_READY = 2'd3;
    reg [1:0]  setup;
    reg        ranged;            // S_READY: the tap ranges are latched (one cycle after the split)
    reg [15:0] i_reg, c, r, y, x;
    reg [15:0] ky0, kx0, ky_end, kx_end;

    /* verilator lint_off UNUSEDSIGNAL */
    wire [32:0] q_c = {17'd0, i_reg} * {16'd0, m_hw};
    wire [32:0] q_y = {17'd0, r} * {16'd0, m_w};
    /* verilator lint_on UNUSEDSIGNAL */
    wire [16:0] ty = {1'b0, y} + 17'(pad_y);
    wire [16:0] tx = {1'b0, x} + 17'(pad_x);
    wire signed [33:0] lo_y = $signed({17'd0, ty}) - $signed({18'd0, out_h - 16'd1} << sy);
    wire signed [33:0] lo_x = $signed({17'd0, tx}) - $signed({18'd0, out_w - 16'd1} << sx);
    wire [16:0] step_y = 17'd1 << sy, step_x = 17'd1 << sx;
    wire [15:0] oy0 = 16'((ty - 17'(ky0)) >> sy);      // output row and column of the first tap (once ranged)
    wire [15:0] ox0 = 16'((tx - 17'(kx0)) >> sx);
    wire [23:0] w_first = w_base + 24'(32'(c) * 32'(kk)) + 24'(32'(ky0) * 32'(k_w)) + 24'(kx0);
    wire [15:0] d_first = dst_base + 16'(32'(oy0) * 32'(out_w)) + ox0;
    wire        empty = (ky0 > ky_end) || (kx0 > kx_end) || c_out == 10'd0;

    // issue unit: one pair per cycle; the last pair of a spike hands over to the next spike without a gap
    reg [15:0] r_ky0, r_kx0, r_ky_end, r_kx_end, ky, kx;
    reg [9:0]  o;
    reg [23:0] w_o, w_y;          // weight address of (o, ky0, kx0) and of (o, ky, kx0)
    reg [15:0] d_o, d_y;          // neuron of (o, oy0, ox0) and of (o, oy, ox0)
    wire more_x = kx + 16'(step_x) <= r_kx_end;
    wire more_y = ky + 16'(step_y) <= r_ky_end;
    wire more_o = o + 10'd1 < c_out;
    wire issue_free = !valid || !(more_x || more_y || more_o);    // nothing issued, or the last pair of a spike
    wire take = setup == S_READY && ranged && issue_free;

    assign ready = (setup == S_IDLE) || take;
    assign busy = (setup != S_IDLE) || valid;

    always @(posedge clk) begin
        if (rst) begin
            setup <= S_IDLE;
            valid <= 1'b0;
        end else begin
            case (setup)
                S_IDLE: if (start) begin i_reg <= index; setup <= S_SPLIT_C; end
                S_SPLIT_C: begin
                    c <= 16'(q_c >> s_hw);
                    r <= i_reg - 16'(32'(16'(q_c >> s_hw)) * 32'(hw));
                    setup <= S_SPLIT_Y;
                end
                S_SPLIT_Y: begin
                    y <= 16'(q_y >> s_w);
                    x <= r - 16'(32'(16'(q_y >> s_w)) * 32'(in_w));
                    ranged <= 1'b0;
                    setup <= S_READY;
                end
                default: begin    // S_READY
                    if (!ranged) begin
                        ky0 <= lo_y < 0 ? 16'(ty & (step_y - 17'd1)) : 16'(lo_y);
                        kx0 <= lo_x < 0 ? 16'(tx & (step_x - 17'd1)) : 16'(lo_x);
                        ky_end <= (ty > 17'(k_h) - 17'd1) ? 16'(k_h) - 16'd1 : 16'(ty);
                        kx_end <= (tx > 17'(k_w) - 17'd1) ? 16'(k_w) - 16'd1 : 16'(tx);
                        ranged <= 1'b1;
                    end else if (take) begin         // a new spike may start in the cycle this one is taken
                        if (start) begin i_reg <= index; setup <= S_SPLIT_C; end
                        else setup <= S_IDLE;
                    end
                end
            endcase

            if (valid && !issue_free) begin      // the pair on the outputs was issued: step to the next
                if (more_x) begin
                    kx <= kx + 16'(step_x);
                    w_addr <= w_addr + 24'(step_x);
                    dst_addr <= dst_addr - 16'd1;
                end else if (more_y) begin
                    ky <= ky + 16'(step_y);
                    kx <= r_kx0;
                    w_y <= w_y + 24'(32'(step_y) * 32'(k_w));
                    d_y <= d_y - out_w;
                    w_addr <= w_y + 24'(32'(step_y) * 32'(k_w));
                    dst_addr <= d_y - out_w;
                end else begin
                    o <= o + 10'd1;
                    ky <= r_ky0; kx <= r_kx0;
                    w_o <= w_o + 24'(ocs);
                    d_o <= d_o + out_hw;
                    w_y <= w_o + 24'(ocs);
                    d_y <= d_o + out_hw;
                    w_addr <= w_o + 24'(ocs);
                    dst_addr <= d_o + out_hw;
                end
            end else if (take && !empty) begin   // the next spike's first pair
                valid <= 1'b1;
                r_ky0 <= ky0; r_kx0 <= kx0; r_ky_end <= ky_end; r_kx_end <= kx_end;
                ky <= ky0; kx <= kx0; o <= 10'd0;
                w_o <= w_first; w_y <= w_first; w_addr <= w_first;
                d_o <= d_first; d_y <= d_first; dst_addr <= d_first;
            end else valid <= 1'b0;
        end
    end
endmodule
`default_nettype wire
