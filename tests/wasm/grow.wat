;; grow(int8) RETURNS int8: grows its memory 1 MiB at a time until refused.
(module
  ;;PRELUDE
  (func (export "grow") (param $batch i32) (result i32)
    (loop $more
      (br_if $more (i32.ne (memory.grow (i32.const 16)) (i32.const -1))))
    (i32.const 0))
)
