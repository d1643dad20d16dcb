;; No quiver_alloc: rejected at CREATE FUNCTION.
(module
  (memory (export "memory") 1)
  (func (export "quiver_abi_version") (result i32) (i32.const 1))
  (func (export "incomplete") (param $batch i32) (result i32) (i32.const 0))
)
