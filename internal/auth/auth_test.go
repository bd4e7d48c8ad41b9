package auth

import (
	"errors"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func TestMintVerify(t *testing.T) {
	v := NewVerifier("s3cret")
	tok, err := Mint("s3cret", "u1", "ana", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	id, err := v.Verify(tok)
	if err != nil || id.User != "u1" || id.Name != "ana" || time.Until(id.Expires) < 50*time.Second {
		t.Fatalf("verify: %+v %v", id, err)
	}
	for name, bad := range map[string]string{
		"empty":        "",
		"garbage":      "not.a.jwt",
		"other secret": must(Mint("other", "u1", "ana", time.Minute)),
		"expired":      signed(t, jwt.MapClaims{"sub": "u1", "exp": time.Now().Add(-time.Minute).Unix()}, jwt.SigningMethodHS256),
		"no exp":       signed(t, jwt.MapClaims{"sub": "u1"}, jwt.SigningMethodHS256),
		"no sub":       signed(t, jwt.MapClaims{"exp": time.Now().Add(time.Minute).Unix()}, jwt.SigningMethodHS256),
		"HS512":        signed(t, jwt.MapClaims{"sub": "u1", "exp": time.Now().Add(time.Minute).Unix()}, jwt.SigningMethodHS512),
		"alg none":     noneToken(t),
	} {
		if _, err := v.Verify(bad); err == nil {
			t.Errorf("%s: accepted", name)
		} else if !errors.Is(err, ErrBadToken) && !errors.Is(err, ErrNoToken) {
			t.Errorf("%s: %v", name, err)
		}
	}
	var open *Verifier
	if id, err := open.Verify(""); err != nil || open.Required() || id.User != "" {
		t.Fatal("a nil verifier must admit guests")
	}
}

func TestFromRequest(t *testing.T) {
	r := httptest.NewRequest("GET", "/rooms/x/events?token=q", nil)
	if FromRequest(r) != "q" {
		t.Fatal("query token")
	}
	r.Header.Set("Authorization", "Bearer h")
	if FromRequest(r) != "h" {
		t.Fatal("header token wins")
	}
}

func must(s string, err error) string {
	if err != nil {
		panic(err)
	}
	return s
}

func signed(t *testing.T, c jwt.MapClaims, m jwt.SigningMethod) string {
	t.Helper()
	s, err := jwt.NewWithClaims(m, c).SignedString([]byte("s3cret"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func noneToken(t *testing.T) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims{"sub": "u1", "exp": time.Now().Add(time.Minute).Unix()}).
		SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
