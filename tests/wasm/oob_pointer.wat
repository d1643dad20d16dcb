;; oob(int8) RETURNS float8: returns a descriptor pointer past the end of memory.
(module
  ;;PRELUDE
  (func (export "oob") (param $batch i32) (result i32)
    (i32.const 0xfffffff0))
)
