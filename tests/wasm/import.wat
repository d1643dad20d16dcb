;; Imports a WASI function: rejected at CREATE FUNCTION.
(module
  (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
  ;;PRELUDE
  (func (export "sneaky") (param $batch i32) (result i32) (i32.const 0))
)
