package web

import (
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/portcullis/portcullis/configs"
	"github.com/portcullis/portcullis/internal/signed"
)

// httpLogin signs a browser in to an admin API served by the HTTP front end: the front
// end sends a browser without a session here (origin: its scheme, host and port; next:
// the page it wanted), and this sends it back with a ticket for that host alone. Only
// hosts of configured http resources are accepted, so it is not an open redirect.
func (s *Server) httpLogin(w http.ResponseWriter, r *http.Request, c *consoleCtx) error {
	origin, err := url.Parse(r.URL.Query().Get("origin"))
	if err != nil || (origin.Scheme != "http" && origin.Scheme != "https") || origin.Host == "" || origin.Path != "" || origin.User != nil {
		return errStatus(http.StatusBadRequest, "origin must be the scheme, host and port of an admin API served by Portcullis")
	}
	host := strings.ToLower(origin.Hostname())
	if !slices.ContainsFunc(s.Config.Resources, func(res configs.Resource) bool {
		return res.Kind == "http" && slices.ContainsFunc(res.Hosts, func(h string) bool { return strings.EqualFold(h, host) })
	}) {
		return errStatus(http.StatusBadRequest, "no admin API is served on %s", host)
	}
	t := signed.Ticket{User: c.sess.User, Email: c.sess.Email, Groups: c.sess.Groups, Source: c.sess.Source, Host: host,
		Nonce: randomToken(), Expires: s.Now().Add(signed.TicketTTL), Session: c.sess.Expires}
	back := origin.Scheme + "://" + origin.Host + "/.portcullis/callback?" + url.Values{
		"ticket": {s.cookies.encode(signed.TicketPurpose, t)}, "next": {localPath(r.URL.Query().Get("next"))}}.Encode()
	http.Redirect(w, r, back, http.StatusSeeOther)
	return nil
}
