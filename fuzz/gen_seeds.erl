%% Writes term_to_binary/2 outputs of varied terms as fuzzing seeds.
%%
%%   erlc -o /tmp gen_seeds.erl && erl -noshell -pa /tmp -s gen_seeds main Dir -s init stop
%%
%% Every term is written with the version byte (NAME.etf) and, for the terms picked for
%% the body form, also without it (NAME.body), since the fuzz target feeds each input to
%% both decode entry points.
-module(gen_seeds).
-export([main/1]).

main([Dir]) ->
    ok = filelib:ensure_dir(filename:join(Dir, "x")),
    Y = 42,
    Closure = fun(X) -> X + Y end,
    Seeds = [
        {atom, ok, []},
        {atom_empty, '', []},
        {atom_latin1, 'héllo', [{minor_version, 1}]},
        {atom_utf8, '日本語', []},
        {atom_long, list_to_atom(lists:duplicate(255, $a)), []},
        {int_small, 255, []},
        {int_neg, -1, []},
        {int_32, 2147483647, []},
        {int_big64, -(1 bsl 63), []},
        {int_big_u64, 1 bsl 64, []},
        {int_large_big, -(1 bsl 2100), []},
        {float, 3.14159, []},
        {float_neg_zero, -0.0, []},
        {float_old, 1.5, [{minor_version, 0}]},
        {binary_empty, <<>>, []},
        {binary, <<"payload-0123456789">>, []},
        {bits, <<1, 2, 3:5>>, []},
        {bits_one, <<1:1>>, []},
        {nil, [], []},
        {string, "hello", []},
        {list_ints, [1, 256, -5, 1 bsl 40], []},
        {improper, [1, 2 | 3], []},
        {improper_atom, [a | b], []},
        {nested_list, [1, [2, [3, [4, []]]]], []},
        {tuple_empty, {}, []},
        {tuple, {hello, 42, <<"payload">>}, []},
        {large_tuple, list_to_tuple(lists:seq(1, 300)), []},
        {map_empty, #{}, []},
        {map, #{a => 1, <<"b">> => [2], 3 => {c}}, []},
        {map_nested, #{user => #{id => 7, tags => [x, y]}, ok => true}, []},
        {map_large, maps:from_list([{K, K * K} || K <- lists:seq(1, 40)]), []},
        {pid, self(), []},
        {port, hd(erlang:ports()), []},
        {ref, make_ref(), []},
        {ref_alias, alias(), []},
        {export_fun, fun lists:map/2, []},
        {closure, Closure, []},
        {closure_noenv, fun() -> ok end, []},
        {mixed, {ok, [1, 2.5, <<"bin">>, #{a => 'B'}], self(), make_ref()}, []},
        {compressed_list, lists:duplicate(100, {hello, <<"world">>}), [compressed]},
        {compressed_map, maps:from_list([{K, <<K:32>>} || K <- lists:seq(1, 50)]), [compressed]},
        {compressed_small, ok, [compressed]},
        {compressed_bin, binary:copy(<<"abc">>, 200), [{compressed, 9}]}
    ],
    Body = [atom, int_big64, float, bits, improper, tuple, map, pid, ref, closure, mixed],
    lists:foreach(
        fun({Name, Term, Opts}) ->
            Bin = term_to_binary(Term, Opts),
            Term = binary_to_term(Bin),
            write(Dir, Name, ".etf", Bin),
            case lists:member(Name, Body) of
                true ->
                    <<131, Rest/binary>> = Bin,
                    write(Dir, Name, ".body", Rest);
                false ->
                    ok
            end
        end,
        Seeds
    ).

write(Dir, Name, Ext, Bin) ->
    ok = file:write_file(filename:join(Dir, atom_to_list(Name) ++ Ext), Bin).
