// One integer CUBA LIF update (docs/semantics.md §3.3, the golden model's QNeuron), combinational.
//
//   u1 = trunc12(u * ku) + (a << 6)              ku = 4096 - (du + 1)
//   u' = u1 - 2^24 if u1 > 2^23; u1 + 2^24 if u1 <= -2^23 (one conditional wrap)
//   v1 = trunc12(v * kv) + u' + bias             kv = 4096 - dv, bias = bias_mant << bias_exp
//   p  = delayed && (v > vth << 6)   ('>=' when cmp_ge): the stored v, i.e. the spike of the previous step
//        (vth is signed: a threshold below 0 fires at rest)
//   vd = p ? (subtract ? v1 - (vth << 6) : 0) : v1       (delayed reset: after the decay, before the clip)
//   v2 = clip(vd, -(2^23 - 1), 2^23 - 1);  held = rc != 0;  v3 = held ? 0 : v2
//   s  = !held && (v3 > vth << 6)   ('>=' when cmp_ge)
//   rc' = s ? refractory : max(rc - 1, 0)
//   v' = (s && !delayed) ? (subtract ? v3 - (vth << 6) : 0) : v3     (immediate reset)
// With delayed reset the stored v stays over the threshold after a spike, so p needs no state of its own; the
// compiler refuses refractory periods with delayed reset (QNeuron.check), as the reference does.
// trunc12(x) = sign(x) * (|x| >> 12) rounds toward zero. The compiler guarantees |a << 6| <= 2^24, so u stays
// within (-2^23, 2^23] and fits 25 bits.
`default_nettype none
module nmc_neuron (
    input  wire        [31:0] a,         // two's complement (ports are plain vectors; signed views below)
    input  wire        [24:0] u,
    input  wire        [23:0] v,
    input  wire        [3:0]  rc,
    input  wire        [12:0] ku,
    input  wire        [12:0] kv,
    input  wire        [17:0] vth,       // two's complement: a threshold below rest is negative
    input  wire        [20:0] bias,
    input  wire        [3:0]  refractory,
    input  wire               subtract,
    input  wire               cmp_ge,
    input  wire               delayed,
    output wire        [24:0] u_next,
    output wire        [23:0] v_next,
    output wire        [3:0]  rc_next,
    output wire               spike
);
    localparam signed [33:0] M = 34'sd8388608;            // 2^23

    function automatic signed [33:0] trunc12(input signed [33:0] x, input [12:0] k);
        reg [33:0] magnitude;
        /* verilator lint_off UNUSEDSIGNAL */
        reg [46:0] product;   // the low 12 bits are truncated away; bit 46 is always 0
        /* verilator lint_on UNUSEDSIGNAL */
        begin
            magnitude = x[33] ? 34'(-x) : x;
            product = {13'd0, magnitude} * {34'd0, k};
            trunc12 = x[33] ? -(34'(product[45:12])) : 34'(product[45:12]);
        end
    endfunction

    wire signed [31:0] a_s = a;
    wire signed [24:0] u_s = u;
    wire signed [23:0] v_s = v;
    wire signed [20:0] bias_s = bias;
    wire signed [33:0] u_decayed = trunc12(34'(u_s), ku);
    wire signed [33:0] u1 = u_decayed + (34'(a_s) <<< 6);
    wire signed [33:0] u2 = (u1 > M) ? u1 - 2 * M : ((u1 <= -M) ? u1 + 2 * M : u1);
    wire signed [17:0] vth_s = vth;
    wire signed [33:0] threshold = 34'(vth_s) <<< 6;
    wire signed [33:0] v1 = trunc12(34'(v_s), kv) + u2 + 34'(bias_s);
    wire               pending = delayed && (cmp_ge ? (34'(v_s) >= threshold) : (34'(v_s) > threshold));
    wire signed [33:0] vd = pending ? (subtract ? v1 - threshold : 34'sd0) : v1;
    wire signed [33:0] v2 = (vd > M - 1) ? M - 1 : ((vd < -(M - 1)) ? -(M - 1) : vd);
    wire               held = (rc != 4'd0);
    wire signed [33:0] v3 = held ? 34'sd0 : v2;
    wire               fire = !held && (cmp_ge ? (v3 >= threshold) : (v3 > threshold));

    assign spike   = fire;
    assign u_next  = u2[24:0];
    assign v_next  = (fire && !delayed) ? (subtract ? 24'(v3 - threshold) : 24'sd0) : v3[23:0];
    assign rc_next = fire ? refractory : (held ? rc - 4'd1 : 4'd0);
endmodule
`default_nettype wire
