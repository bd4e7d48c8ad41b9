# Tickwire: `make run` starts the server, `make test` runs every test.
GO ?= go
BIN := bin/tickwire

.PHONY: run build test vet browser bench fuzz clean

run:
	$(GO) run ./cmd/tickwire serve

build:
	$(GO) build -o $(BIN) ./cmd/tickwire

vet:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...

# Chromium for the browser client's tests (clients/web), installed only when
# missing.
browser:
	@if [ ! -x /usr/bin/chromium ]; then \
		SUDO=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
		echo "installing chromium"; \
		$$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	fi

# Every test under the race detector; fuzz targets run their seed corpus.
test: vet browser
	TICKWIRE_REQUIRE_BROWSER=1 $(GO) test -race -count=1 -timeout 20m ./...

bench:
	$(GO) test -run '^$$' -bench . -benchmem -count 3 ./...

# Fuzz one target for a while: make fuzz PKG=./wire TARGET=FuzzDecodeClient
FUZZTIME ?= 30s
fuzz:
	$(GO) test -run '^$$' -fuzz '^$(TARGET)$$' -fuzztime $(FUZZTIME) $(PKG)

clean:
	rm -rf bin
