// UART transmitter, 8N1, LSB first. `start` with `data` when `ready`; the line idles high.
// A one-byte holding register keeps the line busy back to back: `ready` means the holding register is free (the
// previous byte may still be on the line), and a held byte starts the moment the stop bit of the one before ends,
// so a stream of bytes takes exactly 10 bit times each.
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
    reg [7:0]    held;
    reg          held_valid;

    assign ready = !held_valid;
    wire bit_end = count == CW'(CLKS_PER_BIT - 1);
    wire free = bits_left == 0 || (bits_left == 4'd1 && bit_end);   // the shifter takes a byte at this edge

    always @(posedge clk) begin
        if (rst) begin
            tx <= 1'b1;
            bits_left <= 0;
            count <= 0;
            held_valid <= 1'b0;
        end else begin
            if (start && !held_valid) begin
                held <= data;
                held_valid <= 1'b1;
            end
            tx <= (bits_left == 0) ? 1'b1 : frame[0];
            if (free && held_valid) begin
                frame <= {1'b1, held, 1'b0};
                bits_left <= 4'd10;
                count <= 0;
                held_valid <= 1'b0;
            end else if (bits_left != 0) begin
                if (bit_end) begin
                    count <= 0;
                    frame <= {1'b1, frame[9:1]};
                    bits_left <= bits_left - 1'b1;
                end else count <= count + 1'b1;
            end
        end
    end
endmodule
`default_nettype wire
