;; double_it(float8) RETURNS float8: twice its argument, NULL for NULL.
;; Works on a column or a scalar argument alike (the output mirrors the
;; flags, length and validity of its input).
(module
  ;;PRELUDE
  (func (export "double_it") (param $batch i32) (result i32)
    (local $len i32) (local $in i32) (local $out i32) (local $i i32) (local $col i32)
    ;; the descriptor of argument 0 is at batch + 16
    (local.set $len (i32.load offset=24 (local.get $batch)))
    (local.set $in (i32.load offset=36 (local.get $batch)))
    (local.set $out (call $alloc (i32.mul (local.get $len) (i32.const 8)) (i32.const 8)))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $len)))
        (f64.store (i32.add (local.get $out) (i32.shl (local.get $i) (i32.const 3)))
          (f64.mul (f64.load (i32.add (local.get $in) (i32.shl (local.get $i) (i32.const 3))))
                   (f64.const 2)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (local.set $col (call $column (i32.const 3) (i32.load offset=20 (local.get $batch))
                      (local.get $len) (local.get $out) (i32.mul (local.get $len) (i32.const 8))))
    (i32.store offset=12 (local.get $col) (i32.load offset=28 (local.get $batch)))
    (local.get $col))
)
