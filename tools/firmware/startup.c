// Reset entry for the Cortex-M7 firmware: the vector table at address 0 (initial stack pointer, reset
// handler) and a reset handler that turns the FPU on and hands over to newlib's crt0 (_start), which
// clears .bss, sets up semihosting I/O and argv, runs the constructors and calls main.
#include <stdint.h>

extern uint32_t __stack_top;  // from the linker script
extern void _start(void);     // newlib crt0 (rdimon.specs)

void reset_handler(void);
void fault_handler(void);

// Only the entries this example can hit: a fault ends the run with a message and exit status 3.
__attribute__((section(".vectors"), used)) static void (*const vector_table[16])(void) = {
    (void (*)(void))&__stack_top,  // initial SP
    reset_handler,                 // reset
    fault_handler,                 // NMI
    fault_handler,                 // HardFault
    fault_handler,                 // MemManage
    fault_handler,                 // BusFault
    fault_handler,                 // UsageFault
};

void reset_handler(void) {
  // Full access to CP10/CP11 (the FPU) before any float instruction; the core locks up otherwise.
  volatile uint32_t* const cpacr = (volatile uint32_t*)0xE000ED88u;
  *cpacr |= 0xFu << 20;
  __asm__ volatile("dsb\n\tisb" ::: "memory");
  // .data needs no copy here: qemu loads it straight to RAM (see the linker script). A board with the
  // image in flash copies .data from its load address at this point.
  _start();
  for (;;) {
  }
}

static void semihost(uint32_t operation, const void* argument) {
  register uint32_t op __asm__("r0") = operation;
  register const void* arg __asm__("r1") = argument;
  __asm__ volatile("bkpt 0xab" : "+r"(op) : "r"(arg) : "memory");
}

void fault_handler(void) {
  semihost(0x04, "qtf firmware: CPU fault\n");  // SYS_WRITE0
  // SYS_EXIT_EXTENDED: ADP_Stopped_ApplicationExit with status 3, so the host sees a failure, not a hang.
  static const uint32_t exit_block[2] = {0x20026u, 3u};
  semihost(0x20, exit_block);
  for (;;) {
  }
}
