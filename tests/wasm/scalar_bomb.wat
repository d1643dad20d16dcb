;; bomb(int8) RETURNS vector: one 300,000-element vector "for every row"
;; (the scalar flag): 1.2 MB of guest memory that the host would have to
;; repeat for each row of the batch.
(module
  ;;PRELUDE
  (func (export "bomb") (param $batch i32) (result i32)
    (local $offs i32) (local $vals i32) (local $d i32)
    (local.set $offs (call $alloc (i32.const 8) (i32.const 8)))
    (i32.store offset=4 (local.get $offs) (i32.const 300000))
    (local.set $vals (call $alloc (i32.const 1200000) (i32.const 8)))
    (local.set $d (call $column (i32.const 5) (i32.const 1) (i32.const 1) (local.get $vals) (i32.const 1200000)))
    (i32.store offset=16 (local.get $d) (local.get $offs))
    (local.get $d))
)
