;; loop — spins forever without making a single system call.
;;
;; Usage: loop
;; Prints `loop: spinning forever` to stdout, then runs an empty infinite loop.
;; It never exits and never yields to the host: tests use it to check that a runtime can stop
;; a busy module (termination grace period, activeDeadlineSeconds, CPU-time limits).
;; Written in WAT so no compiler can optimise the loop away.
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  ;; iovec {buf = 16, len = 23} at offset 0; the text at offset 16
  (data (i32.const 0) "\10\00\00\00\17\00\00\00")
  (data (i32.const 16) "loop: spinning forever\n")
  (func (export "_start")
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
    (loop $forever
      (br $forever))))
