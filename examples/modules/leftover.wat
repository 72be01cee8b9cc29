;; leftover — an HTTP handler that tells whether its memory held a previous request's marker.
;;
;; Usage: leftover (as an HTTP handler: CGI on stdin/stdout)
;; Answers `clean` when the word at offset 70000 (in its second page, beyond its data) is zero,
;; `dirty` otherwise, then writes a marker there. A runtime that hands each request a fresh or
;; wiped memory always answers `clean`; tests use it to check that reused instance slots (wasmtime's
;; pooling allocator) never show one request's memory to the next.
;; Written in WAT so that the memory it reads is exactly the word you see here.
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (data (i32.const 64) "Content-Type: text/plain\0a\0aclean\0a")
  (data (i32.const 128) "Content-Type: text/plain\0a\0adirty\0a")
  (func (export "_start")
    ;; the iovec at offset 0: {buf = the answer, len = 32}
    (i32.store (i32.const 0)
      (select (i32.const 128) (i32.const 64) (i32.load (i32.const 70000))))
    (i32.store (i32.const 4) (i32.const 32))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
    (i32.store (i32.const 70000) (i32.const 0x5ec2e7))))
