// UART receiver, 8N1, LSB first. CLKS_PER_BIT clock cycles per bit (100 MHz / 1 Mbaud = 100).
// The start bit is checked at its middle; a byte is delivered (valid for one cycle) only with a valid stop bit.
`default_nettype none
module nmc_uart_rx #(
    parameter integer CLKS_PER_BIT = 100
) (
    input  wire       clk,
    input  wire       rst,
    input  wire       rx,          // serial line, idle high
    output reg        valid,
    output reg  [7:0] data
);
    localparam integer CW = $clog2(CLKS_PER_BIT + 1);
    localparam [1:0] IDLE = 2'd0, START = 2'd1, BITS = 2'd2, STOP = 2'd3;

    reg [1:0]    state;
    reg [CW-1:0] count;
    reg [2:0]    bit_index;
    reg [7:0]    shift;
    reg          rx_meta, rx_sync;   // two-flop synchroniser

    always @(posedge clk) begin
        rx_meta <= rx;
        rx_sync <= rx_meta;
        valid <= 1'b0;
        if (rst) begin
            state <= IDLE;
            count <= 0;
            bit_index <= 0;
            rx_meta <= 1'b1;
            rx_sync <= 1'b1;
        end else begin
            case (state)
                IDLE: if (!rx_sync) begin
                    state <= START;
                    count <= 0;
                end
                START: if (count == CW'(CLKS_PER_BIT / 2)) begin
                    count <= 0;
                    state <= rx_sync ? IDLE : BITS;   // glitch: back to idle
                    bit_index <= 0;
                end else count <= count + 1'b1;
                BITS: if (count == CW'(CLKS_PER_BIT - 1)) begin
                    count <= 0;
                    shift <= {rx_sync, shift[7:1]};
                    bit_index <= bit_index + 1'b1;
                    if (bit_index == 3'd7) state <= STOP;
                end else count <= count + 1'b1;
                STOP: if (count == CW'(CLKS_PER_BIT - 1)) begin
                    state <= IDLE;
                    count <= 0;
                    if (rx_sync) begin
                        valid <= 1'b1;
                        data <= shift;
                    end
                end else count <= count + 1'b1;
            endcase
        end
    end
endmodule
`default_nettype wire
