;; spin(int8) RETURNS int8: never returns.
(module
  ;;PRELUDE
  (func (export "spin") (param $batch i32) (result i32)
    (loop $forever (br $forever))
    (unreachable))
)
