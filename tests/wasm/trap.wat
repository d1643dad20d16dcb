;; boom(int8) RETURNS int8: traps.
(module
  ;;PRELUDE
  (func (export "boom") (param $batch i32) (result i32)
    (unreachable))
)
