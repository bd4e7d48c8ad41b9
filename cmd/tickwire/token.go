package main

import (
	"github.com/tickwire/tickwire/internal/flagenv"

	"context"
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/tickwire/tickwire/internal/auth"
)

// runToken mints an HS256 token for a server started with -auth-secret.
func runToken(_ context.Context, args []string) error {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	secret := fs.String("secret", "", "the server's -auth-secret")
	name := fs.String("name", "", "display name (the token's name claim)")
	sub := fs.String("sub", "", "user id (the sub claim; default: the name)")
	ttl := fs.Duration("ttl", time.Hour, "how long the token is valid")
	if err := flagenv.ParseWithEnv(fs, args); err != nil {
		return err
	}
	if *sub == "" {
		*sub = *name
	}
	if *secret == "" || *sub == "" {
		return errors.New("token: -secret and -name (or -sub) are required")
	}
	tok, err := auth.Mint(*secret, *sub, *name, *ttl)
	if err != nil {
		return err
	}
	fmt.Println(tok)
	return nil
}
