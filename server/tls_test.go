package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/tickwire/tickwire/internal/tlstest"
	"github.com/tickwire/tickwire/wire"
)

// selfSigned writes a certificate for 127.0.0.1 and its key to dir.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	return tlstest.New(t).WriteFiles(t, dir)
}

func TestTLS(t *testing.T) {
	cert, key := selfSigned(t, t.TempDir())
	s := New(testConfig(Config{Addr: "127.0.0.1:0", TLSCert: cert, TLSKey: key, Drain: 10 * time.Millisecond}))
	if s.Scheme() != "https" {
		t.Fatalf("scheme %q", s.Scheme())
	}
	ln, err := s.Listen()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx, ln) }()
	defer func() { cancel(); <-served }()

	pool := x509.NewCertPool()
	pem, _ := os.ReadFile(cert)
	pool.AppendCertsFromPEM(pem)
	tlsConf := &tls.Config{RootCAs: pool}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsConf}, Timeout: 5 * time.Second}
	resp, err := client.Get("https://" + ln.Addr().String() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("healthz over https: %d", resp.StatusCode)
	}
	d := websocket.Dialer{TLSClientConfig: tlsConf}
	ws, _, err := d.Dial("wss://"+ln.Addr().String()+"/ws/play", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	_ = ws.WriteMessage(websocket.BinaryMessage, wire.MustEncode(&wire.Join{Name: "ana", Room: "auto"}))
	_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, frame, err := ws.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	if m, err := wire.DecodeServer(frame); err != nil || m.Type() != wire.TypeWelcome {
		t.Fatalf("over wss: %v %v", m, err)
	}
	// Plain HTTP is not served on the TLS port.
	if resp, err := http.Get("http://" + ln.Addr().String() + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Fatal("plain http answered on the TLS listener")
		}
	}
}
