;; The `counter` kind of echo_node as a WebAssembly guest of node_server::wasm (the ABI is in
;; the docs of node_server/src/wasm.rs):
;;   spawn args [Initial]           the count starts at Initial (an integer; else exit badarg)
;;   {add, N}                       adds N (saturating at the i64 bounds)
;;   {get, From}                    sends {count, V} to the pid From
;;   gen_server:call(P, get)        replies V
;;   crash                          exits with reason crashed
;; Anything else is ignored. Build: `cargo run --example build_guest -- examples/guests/counter.wat`
;; (writes counter.wasm beside it, with etf.wat put in at the @include line).
(module
  (import "erl" "send" (func $send (param i32 i32 i32 i32) (result i32)))
  (import "erl" "reply" (func $reply (param i32 i32)))
  (import "erl" "exit" (func $exit (param i32 i32)))

  (memory (export "memory") 1)
  ;; 16..64: atom texts; 1024..1536: a term written out; 1536..2048: a destination;
  ;; 4096..: the term the host writes in (alloc grows the memory to fit)
  (data (i32.const 16) "add")
  (data (i32.const 24) "get")
  (data (i32.const 32) "crash")
  (data (i32.const 40) "count")
  (data (i32.const 48) "crashed")
  (data (i32.const 56) "badarg")
  (global $count (mut i64) (i64.const 0))

  ;; @include etf.wat

  (func (export "alloc") (param $len i32) (result i32)
    (local $pages i32)
    ;; pages for 4096 + len bytes (len < 2^31, so no overflow)
    (local.set $pages (i32.shr_u (i32.add (local.get $len) (i32.const 69631)) (i32.const 16)))
    (if (i32.gt_u (local.get $pages) (memory.size))
      (then
        (if (i32.eq (memory.grow (i32.sub (local.get $pages) (memory.size))) (i32.const -1))
          (then (unreachable)))))
    (i32.const 4096))

  (func (export "init") (param $ptr i32) (param $len i32)
    (local $v i64)
    (if (call $etf_begin (local.get $ptr) (local.get $len))
      (then
        (local.set $v (call $etf_list_first_int))
        (if (global.get $etf_ok) (then (global.set $count (local.get $v)) (return)))))
    ;; not [Initial]: the spawn fails (exit badarg)
    (call $enc_begin (i32.const 1024))
    (call $enc_atom (i32.const 56) (i32.const 6))
    (call $exit (i32.const 1024) (call $enc_len (i32.const 1024))))

  (func $saturating_add (param $a i64) (param $b i64) (result i64)
    (local $r i64)
    (local.set $r (i64.add (local.get $a) (local.get $b)))
    ;; overflow when both operands' signs differ from the result's
    (if (i64.lt_s (i64.and (i64.xor (local.get $a) (local.get $r))
                           (i64.xor (local.get $b) (local.get $r)))
                  (i64.const 0))
      (then
        (return (select (i64.const 0x8000000000000000) (i64.const 0x7fffffffffffffff)
                        (i64.lt_s (local.get $a) (i64.const 0))))))
    (local.get $r))

  (func (export "handle") (param $ptr i32) (param $len i32)
    (local $at i32) (local $v i64) (local $pid i32) (local $pidlen i32) (local $tag i32)
    (if (i32.eqz (call $etf_begin (local.get $ptr) (local.get $len))) (then (return)))
    (local.set $at (global.get $etf_pos))
    (if (i32.eq (call $etf_tuple) (i32.const 2))
      (then
        (local.set $at (global.get $etf_pos))
        ;; {add, N}
        (if (call $etf_atom_is (i32.const 16) (i32.const 3))
          (then
            (local.set $v (call $etf_int))
            (if (i32.and (global.get $etf_ok) (call $etf_at_end))
              (then (global.set $count (call $saturating_add (global.get $count) (local.get $v)))))
            (return)))
        (global.set $etf_pos (local.get $at))
        ;; {get, From}: From must be a pid
        (if (call $etf_atom_is (i32.const 24) (i32.const 3))
          (then
            (local.set $pid (global.get $etf_pos))
            (local.set $tag (i32.load8_u (local.get $pid)))
            (if (i32.and
                  (i32.or (i32.eq (local.get $tag) (i32.const 88)) (i32.eq (local.get $tag) (i32.const 103)))
                  (i32.and (call $etf_skip) (call $etf_at_end)))
              (then
                ;; the destination: 131 and the pid's bytes
                (local.set $pidlen (i32.sub (global.get $etf_pos) (local.get $pid)))
                (call $enc_begin (i32.const 1536))
                (call $enc_raw (local.get $pid) (local.get $pidlen))
                (call $enc_begin (i32.const 1024))
                (call $enc_tuple (i32.const 2))
                (call $enc_atom (i32.const 40) (i32.const 5))
                (call $enc_int (global.get $count))
                (drop (call $send
                  (i32.const 1536) (i32.add (local.get $pidlen) (i32.const 1))
                  (i32.const 1024) (call $enc_len (i32.const 1024))))))))
        (return)))
    (global.set $etf_pos (local.get $at))
    ;; crash
    (if (i32.and (call $etf_atom_is (i32.const 32) (i32.const 5)) (call $etf_at_end))
      (then
        (call $enc_begin (i32.const 1024))
        (call $enc_atom (i32.const 48) (i32.const 7))
        (call $exit (i32.const 1024) (call $enc_len (i32.const 1024))))))

  (func (export "handle_call") (param $ptr i32) (param $len i32)
    ;; get -> the count; any other request gets no reply
    (if (i32.eqz (call $etf_begin (local.get $ptr) (local.get $len))) (then (return)))
    (if (i32.and (call $etf_atom_is (i32.const 24) (i32.const 3)) (call $etf_at_end))
      (then
        (call $enc_begin (i32.const 1024))
        (call $enc_int (global.get $count))
        (call $reply (i32.const 1024) (call $enc_len (i32.const 1024)))))))
