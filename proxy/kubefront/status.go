package kubefront

import (
	"encoding/json"
	"net/http"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/portcullis/portcullis/elevation"
)

// details is what a Status names besides its message.
type details = metav1.StatusDetails

// status answers with a Kubernetes Status, which kubectl prints as
// "Error from server (<reason>): <message>".
func status(w http.ResponseWriter, code int, reason, message string, d *details) {
	st := metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}, Status: metav1.StatusFailure,
		Message: message, Reason: metav1.StatusReason(reason), Details: d, Code: int32(code)}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(&st)
}

// causes lists names as Status causes of one type (such as the policies that decided).
func causes(field string, names []string) []metav1.StatusCause {
	out := make([]metav1.StatusCause, 0, len(names))
	for _, n := range names {
		out = append(out, metav1.StatusCause{Type: metav1.CauseType("Portcullis" + strings.ToUpper(field[:1]) + field[1:]), Message: n, Field: field})
	}
	return out
}

// approvalDetails names an approval request in a Status.
func approvalDetails(req *elevation.Request) *details {
	return &details{Name: req.ID, Kind: "approvalrequests", Group: "portcullis.dev"}
}

// progress is how far a request's quorum is, in words.
func progress(req *elevation.Request) string {
	var terms []string
	for _, t := range req.Progress().Terms {
		terms = append(terms, t.String())
	}
	if len(terms) == 0 {
		return string(req.State)
	}
	return strings.Join(terms, "; ")
}

// denial is who denied a request and why, if anyone did.
func denial(req *elevation.Request) string {
	out := ""
	for _, v := range req.Votes {
		if !v.Approve {
			out += " by " + v.Approver.User
			if v.Comment != "" {
				out += ": " + v.Comment
			}
		}
	}
	return out
}
