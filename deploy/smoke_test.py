#!/usr/bin/env python3
"""End-to-end check of a fresh OpenTrusty installation, with the Python standard library only.

Signs in to the console API as the platform administrator, creates a tenant, a client and a
user, sets the user's password through the enrollment link, then runs a full OpenID Connect
authorization-code flow with PKCE as that user and calls UserInfo. Every step goes through the
URLs given, so it exercises the reverse proxy too.

    deploy/smoke_test.py --auth https://auth.example.com --api https://api.example.com \
        --email admin@example.com [--insecure]
The administrator's password is read from OPENTRUSTY_TEST_SMOKE_PASSWORD.
Exit code 0 when every step succeeded.
"""

import argparse
import base64
import hashlib
import html.parser
import http.cookiejar
import json
import os
import secrets
import ssl
import sys
import urllib.error
import urllib.parse
import urllib.request

CALLBACK = "http://127.0.0.1:9/callback"


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


class Inputs(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.values = {}

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "input" and a.get("type") == "hidden" and "name" in a:
            self.values[a["name"]] = a.get("value", "")


class Client:
    def __init__(self, insecure):
        self.jar = http.cookiejar.CookieJar()
        ctx = ssl.create_default_context()
        if insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.jar),
            urllib.request.HTTPSHandler(context=ctx),
            NoRedirect(),
        )

    def call(self, method, url, body=None, headers=None, form=False):
        headers = dict(headers or {})
        data = None
        if body is not None and form:
            data = urllib.parse.urlencode(body).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        elif body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            r = self.opener.open(req)
        except urllib.error.HTTPError as e:
            r = e
        text = r.read().decode()
        return r.status, r.headers, text


def step(name, ok, detail=""):
    print(("ok   " if ok else "FAIL ") + name + (f": {detail}" if detail and not ok else ""))
    if not ok:
        sys.exit(1)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--auth", required=True)
    p.add_argument("--api", required=True)
    p.add_argument("--email", required=True)
    p.add_argument("--insecure", action="store_true", help="accept self-signed certificates")
    args = p.parse_args()
    password = os.environ.get("OPENTRUSTY_TEST_SMOKE_PASSWORD")
    if not password:
        sys.exit("set OPENTRUSTY_TEST_SMOKE_PASSWORD to the administrator's password")

    console = Client(args.insecure)
    s, _, text = console.call("POST", args.api + "/api/v1/auth/login",
                              {"email": args.email, "password": password})
    step("console sign-in (through the API host, answered by the auth plane)", s == 200, text)
    csrf = json.loads(text)["csrf_token"]
    admin = {"X-CSRF-Token": csrf}

    suffix = secrets.token_hex(4)
    s, _, text = console.call("POST", args.api + "/api/v1/tenants",
                              {"name": f"smoke-{suffix}"}, admin)
    step("create a tenant", s == 201, text)
    tenant = json.loads(text)["id"]
    s, _, text = console.call("POST", f"{args.api}/api/v1/tenants/{tenant}/clients", {
        "client_name": "Smoke test", "redirect_uris": [CALLBACK],
        "allowed_scopes": ["openid", "email"],
    }, admin)
    step("register a client", s == 201, text)
    created = json.loads(text)
    client_id, client_secret = created["client"]["client_id"], created["client_secret"]
    user_email = f"smoke-{suffix}@example.com"
    s, _, text = console.call("POST", f"{args.api}/api/v1/tenants/{tenant}/users",
                              {"email": user_email}, admin)
    step("invite a user", s == 201, text)
    link = json.loads(text)["enrollment_url"]

    user = Client(args.insecure)
    s, _, page = user.call("GET", link)
    step("open the enrollment link", s == 200, page[:200])
    form = Inputs()
    form.feed(page)
    user_password = "smoke " + secrets.token_hex(8)
    s, _, page = user.call("POST", args.auth + "/enroll", {
        "csrf_token": form.values["csrf_token"], "token": form.values["token"],
        "password": user_password, "password_confirm": user_password}, form=True)
    step("set the password", s == 200 and "password is set" in page, page[:200])

    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(
        hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    state = secrets.token_urlsafe(12)
    url = args.auth + "/oauth2/authorize?" + urllib.parse.urlencode({
        "client_id": client_id, "redirect_uri": CALLBACK, "response_type": "code",
        "scope": "openid email", "state": state, "nonce": secrets.token_urlsafe(12),
        "code_challenge": challenge, "code_challenge_method": "S256"})
    def callback_code(at):
        """The code when `at` is the client's callback, else None."""
        if not at.startswith(CALLBACK):
            return None
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(at).query)
        step("state returned", query.get("state") == [state], at)
        return query["code"][0]

    code = None
    for _ in range(10):
        s, headers, page = user.call("GET", url)
        if s not in (302, 303):
            form = Inputs()
            form.feed(page)
            path = urllib.parse.urlsplit(url).path
            if path == "/login":
                fields = {"email": user_email, "password": user_password, **form.values}
            elif path == "/consent":
                fields = {**form.values, "decision": "approve"}
            else:
                step("authorization flow", False, f"{s} at {url}: {page[:200]}")
            s, headers, page = user.call("POST", args.auth + path, fields, form=True)
            step(f"submit {path}", s in (302, 303), page[:200])
        url = urllib.parse.urljoin(url, headers["Location"])
        code = callback_code(url)
        if code:
            break
    step("authorization code received", code is not None)

    basic = base64.b64encode(f"{client_id}:{client_secret}".encode()).decode()
    s, _, text = user.call("POST", args.auth + "/oauth2/token", {
        "grant_type": "authorization_code", "code": code, "redirect_uri": CALLBACK,
        "code_verifier": verifier}, {"Authorization": "Basic " + basic}, form=True)
    step("exchange the code", s == 200, text)
    tokens = json.loads(text)
    s, _, text = user.call("GET", args.auth + "/oauth2/userinfo",
                           headers={"Authorization": "Bearer " + tokens["access_token"]})
    step("userinfo", s == 200 and json.loads(text).get("email") == user_email, text)
    s, _, text = console.call("GET", f"{args.api}/api/v1/tenants/{tenant}/audit?limit=50")
    kinds = [e["type"] for e in json.loads(text)["items"]] if s == 200 else []
    step("audit trail from both planes", "login.succeeded" in kinds and "client.created" in kinds,
         text[:300])
    print("all steps passed")


if __name__ == "__main__":
    main()
