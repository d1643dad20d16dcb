;; recurse(int8) RETURNS int8: unbounded recursion.
(module
  ;;PRELUDE
  (func $recurse (export "recurse") (param $depth i32) (result i32)
    (i32.add (call $recurse (i32.add (local.get $depth) (i32.const 1))) (i32.const 1)))
)
