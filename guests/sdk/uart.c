/*
 * uart.c - polled 16550 console at HF_UART_BASE.
 *
 * Lines end with "\n" only (no "\r" is added): the console bytes are the
 * same on every machine, and terminals translate as usual.
 */
#include "hf.h"

#define UART_THR 0 /* transmit holding (write) */
#define UART_IER 1 /* interrupt enable */
#define UART_FCR 2 /* FIFO control (write) */
#define UART_LCR 3 /* line control */
#define UART_MCR 4 /* modem control */
#define UART_LSR 5 /* line status */
#define LSR_THRE 0x20

void hf_uart_init(void)
{
    /*
     * The divisor latch is left alone: it means nothing to a virtual UART,
     * and a minimal model that ignores DLAB would print the divisor bytes.
     */
    hf_mmio_write8(HF_UART_BASE + UART_IER, 0x00); /* no interrupts */
    hf_mmio_write8(HF_UART_BASE + UART_LCR, 0x03); /* 8N1, DLAB = 0 */
    hf_mmio_write8(HF_UART_BASE + UART_FCR, 0x07); /* FIFO on, cleared */
    hf_mmio_write8(HF_UART_BASE + UART_MCR, 0x03); /* DTR, RTS */
}

void hf_putc(int c)
{
    while (!(hf_mmio_read8(HF_UART_BASE + UART_LSR) & LSR_THRE))
        ;
    hf_mmio_write8(HF_UART_BASE + UART_THR, (uint8_t)c);
}

void hf_puts(const char *s)
{
    while (*s)
        hf_putc(*s++);
}
