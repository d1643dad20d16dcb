;; huge(int8) RETURNS float8: claims 2^31-1 output values.
(module
  ;;PRELUDE
  (func (export "huge") (param $batch i32) (result i32)
    (call $column (i32.const 3) (i32.const 0) (i32.const 0x7fffffff) (i32.const 1024) (i32.const 0x7ffffff8)))
)
