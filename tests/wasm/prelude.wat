  ;; Shared by the fixtures (the test substitutes it for ";;PRELUDE"): the
  ;; exports every Quiver function module has, written by hand the way a C or
  ;; Zig author would, following the ABI in udf/src/abi.rs.
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 1024))
  (func (export "quiver_abi_version") (result i32) (i32.const 1))
  ;; A bump allocator that grows the memory as needed; 0 when it cannot.
  (func $alloc (export "quiver_alloc") (param $size i32) (param $align i32) (result i32)
    (local $p i32) (local $end i32) (local $have i32)
    (local.set $p (i32.and (i32.add (global.get $heap) (i32.const 7)) (i32.const -8)))
    (local.set $end (i32.add (local.get $p) (local.get $size)))
    (local.set $have (i32.mul (memory.size) (i32.const 65536)))
    (if (i32.gt_u (local.get $end) (local.get $have))
      (then
        (if (i32.eq
              (memory.grow (i32.shr_u (i32.add (i32.sub (local.get $end) (local.get $have)) (i32.const 65535)) (i32.const 16)))
              (i32.const -1))
          (then (return (i32.const 0))))))
    (global.set $heap (local.get $end))
    (local.get $p))
  ;; A column descriptor: type, flags, len, validity, offsets, values, values_len.
  (func $column (param $ty i32) (param $flags i32) (param $len i32) (param $vals i32) (param $vlen i32) (result i32)
    (local $d i32)
    (local.set $d (call $alloc (i32.const 32) (i32.const 8)))
    (i32.store (local.get $d) (local.get $ty))
    (i32.store offset=4 (local.get $d) (local.get $flags))
    (i32.store offset=8 (local.get $d) (local.get $len))
    (i32.store offset=20 (local.get $d) (local.get $vals))
    (i32.store offset=24 (local.get $d) (local.get $vlen))
    (local.get $d))
