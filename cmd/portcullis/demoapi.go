package main

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ordersAdmin is the demo's internal admin API for orders: the kind of service people
// reach with a shared long-lived key today. It trusts one key, which Portcullis holds and
// adds to each request it forwards; callers never see it.
type ordersAdmin struct {
	db  *pgxpool.Pool
	key string
}

// startOrdersAdmin serves the admin API on a free loopback port over the demo database,
// until ctx ends. It returns its address and the key it trusts.
func startOrdersAdmin(ctx context.Context, dsn string) (addr, key string, err error) {
	db, err := pgxpool.New(ctx, dsn)
	if err != nil {
		return "", "", err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		db.Close()
		return "", "", err
	}
	a := &ordersAdmin{db: db, key: "demo-admin-" + rand.Text()}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /orders", a.list)
	mux.HandleFunc("GET /orders/{id}", a.get)
	mux.HandleFunc("POST /orders/{id}/refund", a.refund)
	mux.HandleFunc("DELETE /orders/{id}", a.delete)
	srv := &http.Server{Handler: a.auth(mux), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	go func() {
		<-ctx.Done()
		srv.Close()
		db.Close()
	}()
	return ln.Addr().String(), a.key, nil
}

func (a *ordersAdmin) auth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("X-Api-Key")), []byte(a.key)) != 1 {
			adminJSON(w, http.StatusUnauthorized, map[string]string{"error": "a valid X-Api-Key is required"})
			return
		}
		next.ServeHTTP(w, r)
	})
}

type adminOrder struct {
	ID       int64   `json:"id"`
	Customer string  `json:"customer"`
	Item     string  `json:"item"`
	Total    float64 `json:"total"`
	Status   string  `json:"status"`
}

const adminColumns = "id, customer, item, total::float8, status"

func (a *ordersAdmin) list(w http.ResponseWriter, r *http.Request) {
	rows, _ := a.db.Query(r.Context(), "SELECT "+adminColumns+" FROM orders ORDER BY id LIMIT 100")
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[adminOrder])
	a.answer(w, out, err)
}

func (a *ordersAdmin) get(w http.ResponseWriter, r *http.Request) {
	a.one(w, r, "SELECT "+adminColumns+" FROM orders WHERE id = $1")
}

func (a *ordersAdmin) refund(w http.ResponseWriter, r *http.Request) {
	a.one(w, r, "UPDATE orders SET status = 'refunded' WHERE id = $1 RETURNING "+adminColumns)
}

func (a *ordersAdmin) delete(w http.ResponseWriter, r *http.Request) {
	a.one(w, r, "DELETE FROM orders WHERE id = $1 RETURNING "+adminColumns)
}

// one runs sql on the order in the path and answers it.
func (a *ordersAdmin) one(w http.ResponseWriter, r *http.Request, sql string) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		adminJSON(w, http.StatusBadRequest, map[string]string{"error": "the order id is a number"})
		return
	}
	rows, _ := a.db.Query(r.Context(), sql, id)
	o, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByPos[adminOrder])
	a.answer(w, o, err)
}

func (a *ordersAdmin) answer(w http.ResponseWriter, v any, err error) {
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		adminJSON(w, http.StatusNotFound, map[string]string{"error": "no such order"})
	case err != nil:
		adminJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
	default:
		adminJSON(w, http.StatusOK, v)
	}
}

func adminJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
