;; big(int8) RETURNS int8: declares 2000 pages (125 MiB) of initial memory,
;; over the default 64 MiB limit.
(module
  (memory (export "memory") 2000)
  (global $heap (mut i32) (i32.const 1024))
  (func (export "quiver_abi_version") (result i32) (i32.const 1))
  (func (export "quiver_alloc") (param $size i32) (param $align i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (local.get $p) (i32.and (i32.add (local.get $size) (i32.const 7)) (i32.const -8))))
    (local.get $p))
  (func (export "big") (param $batch i32) (result i32)
    (local $d i32)
    (local.set $d (i32.const 64))
    ;; a scalar int8 column whose one value is the memory size in pages
    (i64.store (i32.const 128) (i64.extend_i32_u (memory.size)))
    (i32.store (local.get $d) (i32.const 2))
    (i32.store offset=4 (local.get $d) (i32.const 1))
    (i32.store offset=8 (local.get $d) (i32.const 1))
    (i32.store offset=20 (local.get $d) (i32.const 128))
    (i32.store offset=24 (local.get $d) (i32.const 8))
    (local.get $d))
)
