;; A start function that never returns: rejected at CREATE FUNCTION.
(module
  ;;PRELUDE
  (func $start (loop $forever (br $forever)))
  (start $start)
  (func (export "never") (param $batch i32) (result i32) (i32.const 0))
)
