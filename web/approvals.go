package web

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"

	"github.com/gorilla/mux"

	"github.com/portcullis/portcullis/elevation"
	"github.com/portcullis/portcullis/policy"
)

// registerApprovals mounts the approvals, elevations, break-glass and reviews endpoints on
// api (the /api/v1 router). Each handler decodes, calls the service, and encodes; errors
// become statuses in one place (writeError, statusOf).
func (s *Server) registerApprovals(api *mux.Router) {
	for _, rt := range []struct {
		method, path string
		h            handlerFunc
	}{
		{http.MethodPost, "/elevations", s.apiRequestElevation},
		{http.MethodGet, "/elevations", s.apiElevations},
		{http.MethodDelete, "/elevations/{id}", s.apiRevoke},
		{http.MethodPost, "/breakglass", s.apiBreakGlass},
		{http.MethodGet, "/breakglass", s.apiBreakGlassSessions},
		{http.MethodPost, "/breakglass/{id}/end", s.apiEndBreakGlass},
		{http.MethodGet, "/reviews", s.apiReviews},
		{http.MethodPost, "/reviews/{id}", s.apiReview},
		{http.MethodGet, "/approvals", s.apiApprovals},
		{http.MethodGet, "/approvals/{id}", s.apiApproval},
		{http.MethodPost, "/approvals/{id}/approve", s.apiDecide(true)},
		{http.MethodPost, "/approvals/{id}/deny", s.apiDecide(false)},
		{http.MethodPost, "/approvals/{id}/cancel", s.apiCancel},
	} {
		api.Handle(rt.path, s.authed(rt.h)).Methods(rt.method)
	}
}

// maxJSONBody bounds a JSON request body.
const maxJSONBody = 1 << 20

// decodeJSON is the one JSON body decoder: at most maxJSONBody bytes, unknown fields
// refused, one value. An empty body is refused unless emptyOK (it leaves v as it is).
// A malformed body is 400, an oversized one 413.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any, emptyOK bool) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxJSONBody))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	var tooBig *http.MaxBytesError
	switch {
	case errors.Is(err, io.EOF) && emptyOK:
		return nil
	case errors.As(err, &tooBig):
		return errStatus(http.StatusRequestEntityTooLarge, "the body is larger than %d bytes", maxJSONBody)
	case err != nil:
		return errStatus(http.StatusBadRequest, "malformed body: %v", err)
	case dec.More():
		return errStatus(http.StatusBadRequest, "malformed body: more than one JSON value")
	}
	return nil
}

// statusOf maps an error of the approvals service (or of sign-in) to a status and a
// message safe to show; the API and the console both use it.
func statusOf(err error) (int, string) {
	var he *httpError
	switch {
	case errors.As(err, &he):
		return he.status, he.msg
	case errors.Is(err, elevation.ErrNotFound):
		return http.StatusNotFound, "no such approval request"
	case errors.Is(err, elevation.ErrNotEligible), errors.Is(err, elevation.ErrForbidden):
		return http.StatusForbidden, err.Error()
	case errors.Is(err, elevation.ErrAlreadyReviewed), errors.Is(err, elevation.ErrAlreadyDecided):
		return http.StatusConflict, err.Error()
	case errors.Is(err, elevation.ErrInvalid):
		return http.StatusUnprocessableEntity, err.Error()
	case errors.Is(err, elevation.ErrStoreUnavailable):
		return http.StatusServiceUnavailable, "the approval store is unavailable; nothing was changed, try again"
	case errors.Is(err, elevation.ErrAudit):
		return http.StatusServiceUnavailable, "the audit log cannot be written; nothing was changed"
	}
	return http.StatusInternalServerError, "internal error"
}

func (s *Server) subjectOf(r *http.Request) *policy.Subject { return &caller(r).Subject }

func (s *Server) apiApprovals(w http.ResponseWriter, r *http.Request) error {
	out, err := s.svc.List(r.Context(), s.subjectOf(r), r.URL.Query().Get("state"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]any{"approvals": out})
}

func (s *Server) apiApproval(w http.ResponseWriter, r *http.Request) error {
	return s.answer(w)(s.svc.Get(r.Context(), s.subjectOf(r), mux.Vars(r)["id"]))
}

func (s *Server) apiDecide(approve bool) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		var in struct {
			Comment string `json:"comment"`
		}
		if err := decodeJSON(w, r, &in, true); err != nil {
			return err
		}
		return s.answer(w)(s.svc.Decide(r.Context(), s.subjectOf(r), mux.Vars(r)["id"], approve, in.Comment))
	}
}

func (s *Server) apiCancel(w http.ResponseWriter, r *http.Request) error {
	return s.answer(w)(s.svc.Cancel(r.Context(), s.subjectOf(r), mux.Vars(r)["id"]))
}

func (s *Server) apiRequestElevation(w http.ResponseWriter, r *http.Request) error {
	var in elevation.ElevationRequest
	if err := decodeJSON(w, r, &in, false); err != nil {
		return err
	}
	return s.answer(w)(s.svc.RequestElevation(r.Context(), s.subjectOf(r), in))
}

func (s *Server) apiElevations(w http.ResponseWriter, r *http.Request) error {
	out, err := s.svc.Elevations(r.Context(), s.subjectOf(r))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]any{"elevations": out})
}

func (s *Server) apiRevoke(w http.ResponseWriter, r *http.Request) error {
	return s.answer(w)(s.svc.Revoke(r.Context(), s.subjectOf(r), mux.Vars(r)["id"]))
}

func (s *Server) apiBreakGlass(w http.ResponseWriter, r *http.Request) error {
	var in elevation.BreakGlassRequest
	if err := decodeJSON(w, r, &in, false); err != nil {
		return err
	}
	return s.answer(w)(s.svc.BreakGlass(r.Context(), s.subjectOf(r), in))
}

func (s *Server) apiBreakGlassSessions(w http.ResponseWriter, r *http.Request) error {
	out, err := s.svc.BreakGlassSessions(r.Context(), s.subjectOf(r))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]any{"breakglass": out})
}

func (s *Server) apiEndBreakGlass(w http.ResponseWriter, r *http.Request) error {
	return s.answer(w)(s.svc.EndBreakGlass(r.Context(), s.subjectOf(r), mux.Vars(r)["id"]))
}

func (s *Server) apiReviews(w http.ResponseWriter, r *http.Request) error {
	out, err := s.svc.Reviews(r.Context(), s.subjectOf(r))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]any{"reviews": out})
}

func (s *Server) apiReview(w http.ResponseWriter, r *http.Request) error {
	var in struct {
		Outcome string `json:"outcome"`
		Notes   string `json:"notes"`
	}
	if err := decodeJSON(w, r, &in, false); err != nil {
		return err
	}
	return s.answer(w)(s.svc.Review(r.Context(), s.subjectOf(r), mux.Vars(r)["id"], in.Outcome, in.Notes))
}

// answer writes a service's one-request answer, or returns its error.
func (s *Server) answer(w http.ResponseWriter) func(*elevation.View, error) error {
	return func(v *elevation.View, err error) error {
		if err != nil {
			return err
		}
		return writeJSON(w, http.StatusOK, v)
	}
}
