;; trap — crashes with a WebAssembly trap.
;;
;; Usage: trap
;; Prints `trap: about to execute unreachable` to stdout, then executes `unreachable`.
;; The runtime reports a trap (no WASI exit status); tests use it for crash handling.
;; Written in WAT so the trapping instruction is exactly the one you read here.
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  ;; iovec {buf = 16, len = 35} at offset 0; the text at offset 16
  (data (i32.const 0) "\10\00\00\00\23\00\00\00")
  (data (i32.const 16) "trap: about to execute unreachable\n")
  (func (export "_start")
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
    unreachable))
