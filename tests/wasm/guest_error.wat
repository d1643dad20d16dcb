;; refuse(int8) RETURNS float8: fails with its own message.
(module
  ;;PRELUDE
  (data (i32.const 64) "refused: this function accepts nothing")
  (func (export "refuse") (param $batch i32) (result i32)
    (call $column (i32.const 255) (i32.const 0) (i32.const 0) (i32.const 64) (i32.const 38)))
)
