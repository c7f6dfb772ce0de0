// Command ferretdb-local runs FerretDB as an embedded MongoDB wire-protocol
// server for local development and tests: the SQLite backend by default, or
// PostgreSQL (-handler postgresql), which bench/ferretdb_handlers.py measures
// against it.
package main

import (
	"context"
	"flag"
	"log"
	"os"
	"os/signal"
	"syscall"

	"github.com/FerretDB/FerretDB/ferretdb"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:27017", "TCP address to listen on")
	dataDir := flag.String("data", "./data", "directory for the SQLite databases")
	handler := flag.String("handler", "sqlite", "backend: sqlite or postgresql")
	postgresURL := flag.String("postgresql-url", "", "PostgreSQL URL, with -handler postgresql")
	flag.Parse()

	if *handler != "sqlite" && *handler != "postgresql" {
		log.Fatalf("unknown handler %q: sqlite or postgresql", *handler)
	}

	if err := os.MkdirAll(*dataDir, 0o755); err != nil {
		log.Fatalf("create data dir: %v", err)
	}

	f, err := ferretdb.New(&ferretdb.Config{
		Listener:      ferretdb.ListenerConfig{TCP: *listen},
		Handler:       *handler,
		SQLiteURL:     "file:" + *dataDir + "/",
		PostgreSQLURL: *postgresURL,
	})
	if err != nil {
		log.Fatalf("configure ferretdb: %v", err)
	}

	// Stop cleanly on SIGINT/SIGTERM so SQLite files are closed.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	log.Printf("ferretdb (%s) listening on %s, data in %s", *handler, *listen, *dataDir)
	f.Run(ctx)
}
