// UART transmitter, 8N1, LSB first. `start` with `data` when `ready`; the line idles high.
`default_nettype none
module nmc_uart_tx #(
    parameter integer CLKS_PER_BIT = 100
) (
    input  wire       clk,
    input  wire       rst,
    input  wire       start,
    input  wire [7:0] data,
    output wire       ready,
    output reg        tx
);
    localparam integer CW = $clog2(CLKS_PER_BIT + 1);

    reg [9:0]    frame;      // stop, data[7:0], start (shifted out LSB first)
    reg [3:0]    bits_left;
    reg [CW-1:0] count;

    assign ready = (bits_left == 0);

    always @(posedge clk) begin
        if (rst) begin
            tx <= 1'b1;
            bits_left <= 0;
            count <= 0;
        end else if (bits_left == 0) begin
            tx <= 1'b1;
            if (start) begin
                frame <= {1'b1, data, 1'b0};
                bits_left <= 4'd10;
                count <= 0;
            end
        end else begin
            tx <= frame[0];
            if (count == CW'(CLKS_PER_BIT - 1)) begin
                count <= 0;
                frame <= {1'b1, frame[9:1]};
                bits_left <= bits_left - 1'b1;
            end else count <= count + 1'b1;
        end
    end
endmodule
`default_nettype wire
