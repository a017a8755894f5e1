#!/bin/bash
source /work/main/bench/diagnose/lib.sh
diagnose_settled_run
pid=$(pgrep -n -x gateway)
perf stat -e 'syscalls:sys_enter_pread64,syscalls:sys_enter_pwrite64,syscalls:sys_enter_fsync,syscalls:sys_enter_fdatasync,syscalls:sys_enter_sendto,syscalls:sys_enter_write,syscalls:sys_enter_futex,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_fcntl' -p $pid -- sleep 10 2>&1 | grep syscalls
