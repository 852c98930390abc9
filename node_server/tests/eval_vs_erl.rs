//! `node_server::eval` against the real Erlang shell: the same expressions, one per line, go
//! to `erl`'s shell (its stdin a file, so it prints `N> ` prompts and the results) and to our
//! evaluator (one session, bindings kept, as the shell keeps them); what each prints must be
//! the same. The shell's continuation lines of an exception report (`     in function ...`,
//! `        called as ...`, which we do not print) are left out of the comparison.
//!
//! OTP 28 and later add `, did you mean 'V'?` to an unbound variable's message when a bound
//! name is similar; against older releases that part of ours is left out of the comparison.
//! Characters above 127 are left out too: the shell's output is Latin-1 when it is not a
//! terminal, ours UTF-8.
//!
//! Needs `erl` (the release of `TESTKIT_OTP`, else the one on `PATH`): skipped without it on
//! a developer machine, a failure in CI (`CI=true`), see [`testkit::require_erl`].

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use node_server::eval::{eval, Bindings};

/// The expressions compared. Nothing here depends on the node (no pids, references or node
/// names), and each fits one line of the shell's output. Maps of more than one key have
/// integer keys: OTP 26 and later print (and `maps:keys/1` lists) the atom keys of a small
/// map in the order of the atoms' indexes in the runtime's atom table, which no other
/// process can know; we print keys in term order, as OTP 25 does.
const EXPRESSIONS: &[&str] = &[
    // Values.
    "1.",
    "-3.",
    "1.5.",
    "1.0e10.",
    "0.1 + 0.2.",
    "$a.",
    "ok.",
    "'Quoted atom'.",
    "\"abc\".",
    "\"a\\nb\\\"c\".",
    "[].",
    "\"\".",
    "[1087].",
    "<<\"abc\">>.",
    "<<1,2,3>>.",
    "<<>>.",
    "{a, \"b\", [1,2], <<\"c\">>}.",
    "[1, 2 | 3].",
    "#{2 => b, 1 => [1|2]}.",
    "#{a => [1|2]}.",
    "#{}.",
    "{}.",
    "16#FF.",
    "123456789012345678901234567890 * 2.",
    // Operators.
    "1 + 2 * 3.",
    "7 div 2.",
    "-7 rem 2.",
    "7 / 2.",
    "1 bsl 70.",
    "bnot 5.",
    "5 band 3 bor 8.",
    "1 == 1.0.",
    "1 =:= 1.0.",
    "a < {b}.",
    "[1,2] ++ [3].",
    "[1,2,3,2] -- [2].",
    "[1, 2, 1, 3, 1] -- [1, 1, 4].",
    "true andalso 1.",
    "false orelse false.",
    "not true.",
    "true xor false.",
    // Matching, bindings, shell commands.
    "X = 20, X + 22.",
    "{A, B} = {1, 2}.",
    "[H | T] = [1, 2, 3].",
    "#{k := V} = #{k => v}.",
    "\"ab\" ++ R = \"abcd\".",
    "b().",
    "X = 21.",
    "f(X).",
    "X = 21.",
    "f().",
    "b().",
    "case {ok, 5} of {ok, N} when N > 3 -> big; _ -> small end.",
    "case 7 of 1 -> one; Other -> {other, Other} end.",
    "if 1 > 2 -> a; true -> b end.",
    "begin Y = 2, Y * Y end.",
    // BIFs and libraries.
    "length([a, b, c]).",
    "element(2, {a, b, c}).",
    "setelement(1, {a, b}, z).",
    "tuple_size({a, b}).",
    "hd([1, 2]).",
    "tl([1, 2]).",
    "abs(-4).",
    "max(1, 2.0).",
    "min(a, 1).",
    "is_atom(a).",
    "is_integer(1.0).",
    "is_list(\"x\").",
    "is_map(#{}).",
    "atom_to_list(hello).",
    "list_to_atom(\"hello world\").",
    "integer_to_list(-42).",
    "list_to_integer(\"123\").",
    "binary_to_list(<<\"hi\">>).",
    "list_to_binary([\"a\", $b, <<\"c\">>]).",
    // Not of an atom: OTP 25 writes ATOM_EXT, 26 and later (and we) SMALL_ATOM_UTF8_EXT.
    "term_to_binary({1, \"a\", <<2>>}).",
    "binary_to_term(term_to_binary({a, [1, 2]})).",
    "tuple_to_list({a, b}).",
    "lists:reverse([1, 2, 3]).",
    "lists:seq(1, 10).",
    "lists:seq(10, 1, -3).",
    "lists:member(b, [a, b]).",
    "lists:append([[1], [2, 3]]).",
    "lists:nth(2, [a, b, c]).",
    "lists:sum([1, 2, 3.5]).",
    "lists:max([1, 3, 2]).",
    "lists:sort([c, 3, \"a\", {x}]).",
    "lists:usort([3, 1, 3, 2]).",
    "lists:keyfind(b, 1, [{a, 1}, {b, 2}]).",
    "lists:keystore(c, 1, [{a, 1}], {c, 3}).",
    "lists:last([1, 2, 3]).",
    "lists:flatten([1, [2, [3, []]], 4]).",
    "lists:zip([1, 2], [a, b]).",
    "lists:duplicate(3, x).",
    "lists:sublist([1, 2, 3, 4], 2, 2).",
    "lists:split(2, [1, 2, 3]).",
    "maps:get(a, #{a => 1}).",
    "maps:get(b, #{a => 1}, none).",
    "maps:put(2, b, #{1 => a}).",
    "maps:remove(1, #{1 => a, 2 => b}).",
    "maps:keys(#{2 => a, 1 => b}).",
    "maps:values(#{2 => a, 1 => b}).",
    "maps:to_list(#{a => 1}).",
    "maps:from_list([{2, a}, {1, b}]).",
    "maps:find(a, #{a => 1}).",
    "maps:merge(#{1 => a}, #{1 => b, 2 => c}).",
    "M = #{1 => a}, M#{1 := b, 3 => c}.",
    "proplists:get_value(a, [{a, 1}, b]).",
    "proplists:get_value(b, [{a, 1}, b]).",
    "proplists:get_value(c, [{a, 1}], def).",
    "proplists:get_all_values(a, [{a, 1}, {a, 2}]).",
    "proplists:lookup(a, [{a, 1}]).",
    "proplists:delete(a, [{a, 1}, {b, 2}]).",
    // Errors.
    "1 = 2.",
    "{a, _} = {b, 1}.",
    "hd([]).",
    "element(5, {a}).",
    "length(x).",
    "atom_to_list(1).",
    "list_to_integer(\"x\").",
    "not 1.",
    "1 and true.",
    "1 andalso true.",
    "1 + a.",
    "1 / 0.",
    "10 div 0.",
    "- a.",
    "foo:bar().",
    "not_a_fun(1).",
    "case x of y -> 1 end.",
    "if false -> 1 end.",
    "exit(foo).",
    "exit({a, \"b\"}).",
    "throw({x, 1}).",
    "error(foo).",
    "error(system_limit).",
    "maps:get(a, #{}).",
    "maps:get(a, 1).",
    "M2 = #{}, M2#{a := 1}.",
    "Unbound.",
    "Z = 1, Z + Unbound2.",
    "1 + ).",
    "1 + .",
    "foo bar.",
    "1 X.",
    "(1 end.",
    "{a 1}.",
    "1 ++ ++ 2.",
    "1 < 2 < 3.",
    "_.",
    "f(1).",
    "case 1 of 1 -> A1 = 1; 2 -> ok end, A1.",
    "case 2 of 1 -> A2 = 1; 2 -> ok end, A2.",
    "false andalso (B2 = 1), B2.",
    "[a|b] ++ [c].",
    // More values.
    "\"abc\" ++ 1.",
    "_X = 5, _X.",
    "<<\"a\", 1>>.",
    "<<\"\\n\">>.",
    "\"\\t\\e\".",
    "abc@def.",
    "1.5e3.",
    "2.0 * 3.",
    "-0.0.",
    "7 rem -2.",
    "{1, 2} == {1.0, 2}.",
    "lists:keydelete(a, 1, [{a, 1}, {b, 2}]).",
    "lists:nthtail(1, [a, b]).",
    "lists:delete(b, [a, b, c, b]).",
    "case 1 of Q when foo(Q) -> 1; _ -> 2 end.",
    "case 1 of Q when Q = 1 -> 1; _ -> 2 end.",
    "if lists:member(1, [1]) -> a; true -> b end.",
    "case 1 of Q when is_integer(Q), Q > 0; Q == a -> y end.",
    "case {1} of Q when element(1, Q) == 1, erlang:tuple_size(Q) =:= 1 -> y end.",
    "io:format(\"hi~n\").",
    "io:format(\"~p|~w|~s|~ts~n\", [\"ab\", \"ab\", <<\"c\">>, [<<\"d\">>, $e]]).",
    "io:format(\"x~5B|~-5B|~.16B|~3B|~*B~n\", [42, -7, 255, 12345, 3, 7]).",
    "io:format(\"~c~3c|~.3c|~i~~~n\", [$a, $b, $x, skipped]).",
    "io:format(\"~f ~.2f ~e ~.3e~n\", [3.14159, 2.005, 1234.5, 0.000123]).",
    "io:format(\"~g ~g ~g ~g ~.2g~n\", [1.5, 1.0e-5, 12345.0, 0.5, 250.0]).",
    "io:format(\"x~10s|~-6w|~6p|~lp~n\", [\"abc\", x, y, \"ab\"]).",
    "io:format(\"~-6p~n\", [x]).",
    "io:format(\"~d~n\", [1]).",
    "io:format(\"~p~n\", []).",
    "io:format(42, []).",
    "io:put_chars([\"a\", <<\"b\">>, $c]), io:nl().",
];

/// Whether `line` starts with a shell prompt `N> `; the rest of the line if so.
fn after_prompt(line: &str) -> Option<&str> {
    let digits = line.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    line[digits..].strip_prefix("> ")
}

/// What the real shell printed for each expression.
fn erl_outputs(erl: &Path) -> Vec<String> {
    let dir = std::env::temp_dir().join(format!("eval_vs_erl_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("input.txt");
    std::fs::write(&input, EXPRESSIONS.join("\n") + "\n").unwrap();
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("exec \"$0\" -boot start_clean < \"$1\"")
        .arg(erl)
        .arg(&input)
        .env("HOME", &dir);
    let out = testkit::output_within(&mut cmd, Duration::from_secs(120)).expect("erl runs");
    let _ = std::fs::remove_dir_all(&dir);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut results: Vec<Vec<String>> = Vec::new();
    let mut started = false;
    for line in text.lines() {
        if let Some(rest) = after_prompt(line) {
            started = true;
            results.push(vec![rest.to_owned()]);
        } else if started {
            if let Some(last) = results.last_mut() {
                last.push(line.to_owned());
            }
        }
    }
    // The last prompt is followed by the shell's goodbye at the end of its input.
    results.pop();
    results
        .into_iter()
        .map(|lines| {
            lines
                .into_iter()
                // The report's continuation lines (we print the first line only).
                .filter(|l| !l.starts_with(' '))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .collect()
}

#[test]
fn eval_prints_what_the_erlang_shell_prints() {
    let Some(erl) = testkit::require_erl() else {
        return;
    };
    let theirs = erl_outputs(&erl);
    // OTP 28 and later suggest a similar bound variable for an unbound one; we do too.
    let suggests = testkit::otp_release().is_some_and(|r| r >= 28);
    let ours: Vec<String> = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(async {
            let mut bindings = Bindings::new();
            let mut out = Vec::new();
            for e in EXPRESSIONS {
                out.push(
                    eval(e, &mut bindings, &node_server::eval::NoNode)
                        .await
                        .text(),
                );
            }
            out
        });
    assert_eq!(
        theirs.len(),
        ours.len(),
        "erl printed {} results for {} expressions: {theirs:#?}",
        theirs.len(),
        EXPRESSIONS.len()
    );
    let mut wrong = Vec::new();
    for ((e, t), o) in EXPRESSIONS.iter().zip(&theirs).zip(&ours) {
        let o = &match o.split_once(", did you mean '") {
            Some((before, _)) if !suggests => before.to_owned(),
            _ => o.clone(),
        };
        println!("{e:<50} erl: {t:?}\n{:<50} ours: {o:?}", "");
        if t != o {
            wrong.push(format!("{e}\n  erl:  {t:?}\n  ours: {o:?}"));
        }
    }
    assert!(wrong.is_empty(), "differences:\n{}", wrong.join("\n"));
}
