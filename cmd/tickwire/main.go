// Command tickwire is the Tickwire server and its tools: serve runs the
// server; bot fills rooms with moving bots; peer joins a call as a Pion test
// peer.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

const usage = `usage: tickwire <command> [flags]

commands:
  serve   run the server (tickwire serve -h for flags)
  bot     bot players that join rooms and move
  peer    a WebRTC test peer that joins a call
  bench   benchmarks: game, feeds, transports, signaling (tickwire bench -h)
  token   mint a token for a server run with -auth-secret

Every flag of serve can also be set as TICKWIRE_<FLAG> (upper case, - as _).
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cmds := map[string]func(context.Context, []string) error{
		"serve": runServe,
		"bot":   runBot,
		"peer":  runPeer,
		"bench": runBench,
		"token": runToken,
	}
	run, ok := cmds[os.Args[1]]
	if !ok {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	if err := run(ctx, os.Args[2:]); err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "tickwire:", err)
		os.Exit(1)
	}
}
