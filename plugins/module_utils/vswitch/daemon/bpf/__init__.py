"""vswitchd's kernel fast path: an eBPF assembler, the bpf() system call, XDP attach, the switch program."""
