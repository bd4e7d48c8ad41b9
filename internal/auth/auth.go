// Package auth checks and mints the HS256 JWTs that guard Tickwire when it
// runs with an auth secret: `sub` is the user id, `name` the display name,
// `exp` the expiry. Without a secret everyone is a guest.
//
// A Verifier is immutable and safe for concurrent use.
package auth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Errors of Verify.
var (
	ErrNoToken  = errors.New("auth: no token")
	ErrBadToken = errors.New("auth: bad token")
)

// Identity is who a valid token names.
type Identity struct {
	User    string    // the `sub` claim
	Name    string    // the `name` claim, may be empty
	Expires time.Time // the `exp` claim; zero for a guest
}

// claims are the JWT claims Tickwire reads and writes.
type claims struct {
	Name string `json:"name,omitempty"`
	jwt.RegisteredClaims
}

// Verifier checks tokens against one secret. A nil *Verifier admits
// everyone as a guest.
type Verifier struct {
	secret []byte
	parser *jwt.Parser
}

// NewVerifier returns a verifier for secret, or nil when secret is empty.
func NewVerifier(secret string) *Verifier {
	if secret == "" {
		return nil
	}
	return &Verifier{
		secret: []byte(secret),
		parser: jwt.NewParser(jwt.WithValidMethods([]string{"HS256"}), jwt.WithExpirationRequired(), jwt.WithLeeway(5*time.Second)),
	}
}

// Required reports whether tokens are checked at all.
func (v *Verifier) Required() bool { return v != nil }

// Verify checks a token: HS256 with the secret, not expired, with a `sub`.
// A nil Verifier returns a guest identity for any token.
func (v *Verifier) Verify(token string) (Identity, error) {
	if v == nil {
		return Identity{}, nil
	}
	if token == "" {
		return Identity{}, ErrNoToken
	}
	var c claims
	_, err := v.parser.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return v.secret, nil })
	if err != nil {
		return Identity{}, fmt.Errorf("%w: %v", ErrBadToken, err)
	}
	if c.Subject == "" {
		return Identity{}, fmt.Errorf("%w: no sub", ErrBadToken)
	}
	return Identity{User: c.Subject, Name: c.Name, Expires: c.ExpiresAt.Time}, nil
}

// FromRequest returns the token of an HTTP request: the bearer token of
// its Authorization header, or its `token` query parameter.
func FromRequest(r *http.Request) string {
	if h := r.Header.Get("Authorization"); h != "" {
		if t, ok := strings.CutPrefix(h, "Bearer "); ok {
			return strings.TrimSpace(t)
		}
	}
	return r.URL.Query().Get("token")
}

// Mint returns a token for user, named name, valid for ttl.
func Mint(secret, user, name string, ttl time.Duration) (string, error) {
	if secret == "" || user == "" || ttl <= 0 {
		return "", errors.New("auth: mint needs a secret, a user and a positive ttl")
	}
	now := time.Now()
	c := claims{Name: name, RegisteredClaims: jwt.RegisteredClaims{
		Subject:   user,
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
	}}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString([]byte(secret))
}

type identityKey struct{}

// WithIdentity returns ctx carrying id, for handlers behind a token check.
func WithIdentity(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, identityKey{}, id)
}

// FromContext returns the identity a token check put in ctx.
func FromContext(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(identityKey{}).(Identity)
	return id, ok
}

// Expiry returns when the token of a checked request expires, or zero.
func Expiry(ctx context.Context) time.Time {
	id, _ := FromContext(ctx)
	return id.Expires
}
