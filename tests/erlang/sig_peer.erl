%% The Erlang side of the signal interop tests (tests/signals_interop.rs): links, monitors and
%% exit signals between Erlang processes and Rust actors.
%%
%% Not a peer of its own: the tests run `eval_peer` (one Erlang expression per stdin line, all
%% evaluated by one process, "the tester") with this module on the code path and call the
%% functions below from those expressions. State lives in the tester's process dictionary:
%% {pid, Key} -> a pid known by a test key, {mon, Key} -> a monitor reference. Every wait is
%% bounded; a function that gives up returns `timeout` rather than hanging the line protocol.
%%
%%   start()                      -> ok        registers the tester as `tester`
%%   await_pid(Key, Ms)           -> ok | timeout
%%       Waits for {pid, Key, Pid} (Rust sends its actors' pids so) and keeps Pid as Key.
%%   pid(Key)                     -> Pid
%%   monitor(Key, Target)         -> ok        erlang:monitor(process, Target), kept as Key
%%   demonitor(Key)               -> true      erlang:demonitor(Ref, [flush])
%%   down(Key, Ms)                -> {Obj, Reason} | timeout
%%       The DOWN of monitor Key; a pid Obj is written {pid, K} when it is kept as K.
%%   no_down(Key, Ms)             -> none | {Obj, Reason}    down/2 where none is expected
%%   victim(Key, Dest, Name)      -> ok
%%       Spawns a process (registered as Name unless Name is `none`) that sends
%%       {victim, Key, self()} to Dest and exits with R on {die, R}.
%%   linker(Key, Target, Trap)    -> ok
%%       Spawns a process that sets trap_exit to Trap, links to Target, sends
%%       {linked, Key, self()} to Target, then: {die, R} -> exit(R); unlink -> unlink(Target)
%%       and sends {unlinked, Key} to Target; {'EXIT', From, R} -> tells the tester.
%%   linker_exit(Key, Ms)         -> {From, Reason} | timeout     what linker Key trapped
%%   die(Key, Reason, Ms)         -> ok | timeout
%%       Tells process Key to exit with Reason and waits until it has.
%%   monitored_by(Pid, N, Ms)     -> ok | {timeout, MonitoredBy}
%%       Polls until Pid is monitored by exactly N processes.
-module(sig_peer).

-export([start/0, await_pid/2, pid/1, monitor/2, demonitor/1, down/2, no_down/2,
         victim/3, linker/3, linker_exit/2, die/3, monitored_by/3]).

start() ->
    true = register(tester, self()),
    ok.

await_pid(Key, Ms) ->
    receive
        {pid, Key, Pid} -> put({pid, Key}, Pid), ok
    after Ms -> timeout
    end.

pid(Key) ->
    case get({pid, Key}) of
        undefined -> error({no_pid, Key});
        Pid -> Pid
    end.

monitor(Key, Target) ->
    put({mon, Key}, erlang:monitor(process, Target)),
    ok.

demonitor(Key) ->
    erlang:demonitor(get({mon, Key}), [flush]).

down(Key, Ms) ->
    Ref = get({mon, Key}),
    receive
        {'DOWN', Ref, process, Obj, Reason} -> {name(Obj), Reason}
    after Ms -> timeout
    end.

no_down(Key, Ms) ->
    case down(Key, Ms) of
        timeout -> none;
        Down -> Down
    end.

%% A pid as {pid, Key} when the tester keeps it as Key.
name(Obj) when is_pid(Obj) ->
    case [K || {{pid, K}, P} <- get(), P =:= Obj] of
        [K | _] -> {pid, K};
        [] -> {unknown_pid, Obj}
    end;
name(Obj) ->
    Obj.

victim(Key, Dest, Name) ->
    Tester = self(),
    Pid = spawn(fun() ->
                        Name =:= none orelse register(Name, self()),
                        Dest ! {victim, Key, self()},
                        Tester ! {victim_ready, Key},
                        receive
                            {die, R} -> exit(R)
                        after 60000 -> exit(victim_timeout)
                        end
                end),
    put({pid, Key}, Pid),
    receive
        {victim_ready, Key} -> ok
    after 5000 -> timeout
    end.

linker(Key, Target, Trap) ->
    Tester = self(),
    Pid = spawn(fun() ->
                        process_flag(trap_exit, Trap),
                        link(Target),
                        Target ! {linked, Key, self()},
                        linker_loop(Key, Tester, Target)
                end),
    put({pid, Key}, Pid),
    ok.

linker_loop(Key, Tester, Target) ->
    receive
        {die, R} ->
            exit(R);
        unlink ->
            unlink(Target),
            Target ! {unlinked, Key},
            linker_loop(Key, Tester, Target);
        {'EXIT', From, R} ->
            Tester ! {linker_exit, Key, From, R},
            linker_loop(Key, Tester, Target)
    after 60000 ->
        exit(linker_timeout)
    end.

linker_exit(Key, Ms) ->
    receive
        {linker_exit, Key, From, R} -> {name(From), R}
    after Ms -> timeout
    end.

die(Key, Reason, Ms) ->
    Pid = pid(Key),
    Ref = erlang:monitor(process, Pid),
    Pid ! {die, Reason},
    receive
        {'DOWN', Ref, process, _, _} -> ok
    after Ms -> timeout
    end.

monitored_by(Pid, N, Ms) ->
    Deadline = erlang:monotonic_time(millisecond) + Ms,
    poll_monitored_by(Pid, N, Deadline).

poll_monitored_by(Pid, N, Deadline) ->
    {monitored_by, By} = erlang:process_info(Pid, monitored_by),
    case length(By) =:= N of
        true -> ok;
        false ->
            case erlang:monotonic_time(millisecond) >= Deadline of
                true -> {timeout, By};
                false ->
                    receive after 10 -> ok end,
                    poll_monitored_by(Pid, N, Deadline)
            end
    end.
