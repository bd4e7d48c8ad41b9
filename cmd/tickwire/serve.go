package main

import (
	"context"

	"github.com/tickwire/tickwire/server"
)

// runServe runs the server with the built-in modes.
func runServe(ctx context.Context, args []string) error { return server.Serve(ctx, args) }
