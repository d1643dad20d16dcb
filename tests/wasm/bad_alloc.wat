;; bad_alloc(int8) RETURNS float8: quiver_alloc hands out a pointer outside its memory.
(module
  (memory (export "memory") 1)
  (func (export "quiver_abi_version") (result i32) (i32.const 1))
  (func (export "quiver_alloc") (param i32 i32) (result i32) (i32.const 0xfffffff8))
  (func (export "bad_alloc") (param $batch i32) (result i32) (i32.const 0))
)
