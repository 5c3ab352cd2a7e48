// Command ferretdb-embedded runs FerretDB v1.24 (MongoDB wire protocol over SQLite) through its
// embeddable package. The project builds this small wrapper instead of FerretDB's own command:
// that command refuses to start when built with `go install …@version`, because its version
// file is not part of the module. Used for the dev stack and the tests; production runs MongoDB.
//
// It also gives every collection an index on the expression FerretDB's `_id` lookups compare
// (see idindex.go), so find/update/delete by `_id` are index searches instead of table scans;
// `--no-id-index` turns that off (the benchmark baseline). `ferretdb-embedded explain --sqlite-dir
// DIR --db NAME --collection NAME` prints SQLite's plan for those lookups on one collection.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/FerretDB/FerretDB/ferretdb"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "explain" {
		os.Exit(explainMain(os.Args[2:]))
	}

	listen := flag.String("listen-addr", "127.0.0.1:27017", "TCP address to listen on")
	dir := flag.String("sqlite-dir", "", "directory for the SQLite files (one per database); required")
	logLevel := flag.String("log-level", "warn", "debug, info, warn or error")
	noIDIndex := flag.Bool("no-id-index", false, "do not add the _id lookup index to collections (baseline runs)")
	flag.Usage = func() {
		out := flag.CommandLine.Output()
		fmt.Fprintln(out, "Usage: ferretdb-embedded --sqlite-dir DIR [flags]")
		fmt.Fprintln(out, "       ferretdb-embedded explain --sqlite-dir DIR --db NAME --collection NAME")
		flag.PrintDefaults()
	}
	flag.Parse()

	if *dir == "" {
		fmt.Fprintln(os.Stderr, "ferretdb-embedded: --sqlite-dir is required")
		os.Exit(2)
	}
	if err := os.MkdirAll(*dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "ferretdb-embedded:", err)
		os.Exit(1)
	}

	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintln(os.Stderr, "ferretdb-embedded: bad --log-level:", err)
		os.Exit(2)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	f, err := ferretdb.New(&ferretdb.Config{
		Listener:  ferretdb.ListenerConfig{TCP: *listen},
		Handler:   "sqlite",
		SQLiteURL: "file:" + *dir + "/",
		Logger:    logger,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "ferretdb-embedded:", err)
		os.Exit(1)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	// Existing collections get their index before the first client connects; new ones within a
	// watch interval of their creation.
	waitIndexer := func() {}
	if !*noIDIndex {
		waitIndexer = newIDIndexer(*dir, logger).run(ctx)
	}

	// The line the launchers wait for.
	fmt.Println("ferretdb-embedded listening", f.MongoDBURI())
	err = f.Run(ctx)
	stop()
	waitIndexer()
	if err != nil {
		fmt.Fprintln(os.Stderr, "ferretdb-embedded:", err)
		os.Exit(1)
	}
}

// explainMain is the `explain` subcommand; returns the exit code.
func explainMain(args []string) int {
	fs := flag.NewFlagSet("explain", flag.ContinueOnError)
	dir := fs.String("sqlite-dir", "", "directory of the SQLite files; required")
	db := fs.String("db", "", "database name; required")
	coll := fs.String("collection", "", "collection name; required")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *dir == "" || *db == "" || *coll == "" {
		fmt.Fprintln(os.Stderr, "ferretdb-embedded explain: --sqlite-dir, --db and --collection are required")
		return 2
	}
	if err := explain(context.Background(), *dir, *db, *coll); err != nil {
		fmt.Fprintln(os.Stderr, "ferretdb-embedded explain:", err)
		return 1
	}
	return 0
}
