;; wrong_type(int8) RETURNS float8: returns a text column instead.
(module
  ;;PRELUDE
  (func (export "wrong_type") (param $batch i32) (result i32)
    (call $column (i32.const 4) (i32.const 0) (i32.load offset=4 (local.get $batch)) (i32.const 0) (i32.const 0)))
)
