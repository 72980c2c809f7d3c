"""The seed's auth workshop (section 9) plus every way a token can be wrong."""

from __future__ import annotations

import base64
import datetime as dt

import jwt
import orjson
import pytest
from sqlalchemy import delete, select, text
from sqlalchemy.exc import IntegrityError

from taskapi.blueprints.auth.schemas import RegisterRequest
from taskapi.domain.accounts import register_user
from taskapi.domain.models import User
from taskapi.domain.names import canonical
from taskapi.errors import APIError
from tests.conftest import PASSWORD, session_on, state_of
from tests.lookalikes import fullwidth

NEW_USER = {"username": "newuser", "email": "new@example.com", "password": "s3cure-password"}


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _error(response, status: int) -> dict:
    assert response.status_code == status, await response.get_data(as_text=True)
    body = await response.get_json()
    assert body["status"] == "error"
    assert isinstance(body["error"]["message"], str)
    assert isinstance(body["error"]["code"], str)
    if status == 401:
        assert response.headers["WWW-Authenticate"] == "Bearer"
    return body["error"]


# --- register ---------------------------------------------------------------------------------


async def test_register_success(app, client):
    response = await client.post("/auth/register", json=NEW_USER)
    assert response.status_code == 201
    body = await response.get_json()
    assert body["message"] == "User registered successfully"
    async with session_on(state_of(app).db) as session:
        user = await session.scalar(select(User).where(User.username == "newuser"))
    assert user is not None and user.id == body["user_id"]
    assert user.role == "user"
    assert user.password_hash != NEW_USER["password"]


async def test_register_ignores_role_in_body(app, client):
    response = await client.post("/auth/register", json={**NEW_USER, "role": "admin"})
    assert response.status_code == 201
    async with session_on(state_of(app).db) as session:
        role = await session.scalar(select(User.role).where(User.username == "newuser"))
    assert role == "user"


@pytest.mark.parametrize("missing", ["username", "email", "password"])
async def test_register_missing_fields(client, missing):
    body = {k: v for k, v in NEW_USER.items() if k != missing}
    error = await _error(await client.post("/auth/register", json=body), 400)
    assert error["message"] == "Missing username, email, or password"
    assert missing in error["details"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("username", "ab"),
        ("username", "has space"),
        ("username", "x" * 81),
        ("email", "not-an-email"),
        ("email", "a" * 120 + "@example.com"),
        ("password", "short"),
        ("password", 12345678),
    ],
)
async def test_register_invalid_fields(client, field, value):
    error = await _error(await client.post("/auth/register", json={**NEW_USER, field: value}), 400)
    assert field in error["details"]


async def test_register_duplicate_username(client):
    assert (await client.post("/auth/register", json=NEW_USER)).status_code == 201
    again = {**NEW_USER, "email": "other@example.com"}
    error = await _error(await client.post("/auth/register", json=again), 409)
    assert error["code"] == "conflict"


async def test_register_duplicate_email(client):
    assert (await client.post("/auth/register", json=NEW_USER)).status_code == 201
    again = {**NEW_USER, "username": "otheruser"}
    await _error(await client.post("/auth/register", json=again), 409)


# --- login ------------------------------------------------------------------------------------


async def test_login_success(app, client, make_account):
    account = await make_account()
    response = await client.post(
        "/auth/login", json={"username": account.username, "password": account.password}
    )
    assert response.status_code == 200
    body = await response.get_json()
    assert body["access_token"] and body["refresh_token"]
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == state_of(app).settings.access_token_expires
    me = await client.get("/auth/me", headers=_bearer(body["access_token"]))
    assert me.status_code == 200


async def test_login_wrong_password_and_unknown_user_look_the_same(client, make_account):
    account = await make_account()
    wrong = await _error(
        await client.post("/auth/login", json={"username": account.username, "password": "nope"}),
        401,
    )
    unknown = await _error(
        await client.post("/auth/login", json={"username": "ghost", "password": "nope"}), 401
    )
    assert wrong == unknown
    assert wrong["message"] == "Invalid username or password"


@pytest.mark.parametrize("body", [{"username": "u"}, {"password": "p"}, {}])
async def test_login_missing_fields(client, body):
    error = await _error(await client.post("/auth/login", json=body), 400)
    assert error["message"] == "Username and password required"


async def test_access_token_carries_identity_and_role(app, client, make_account):
    admin = await make_account("admin")
    async with app.app_context():
        claims = jwt.decode(
            admin.access_token, state_of(app).settings.jwt_secret_key, algorithms=["HS256"]
        )
    assert claims["identity"] == admin.id
    assert claims["role"] == "admin"
    assert claims["type"] == "access"
    assert claims["exp"] - claims["iat"] == 3600


# --- refresh ----------------------------------------------------------------------------------


async def test_refresh_token_success(client, make_account):
    account = await make_account()
    response = await client.post("/auth/refresh", headers=_bearer(account.refresh_token))
    assert response.status_code == 200
    token = (await response.get_json())["access_token"]
    assert (await client.get("/api/tasks/", headers=_bearer(token))).status_code == 200


async def test_refresh_with_access_token(client, make_account):
    account = await make_account()
    response = await client.post("/auth/refresh", headers=_bearer(account.access_token))
    assert (await _error(response, 401))["code"] == "token_wrong_type"


async def test_refresh_invalid_token(client):
    await _error(await client.post("/auth/refresh", headers=_bearer("not.a.token")), 401)


async def test_refresh_token_rejected_on_protected_route(client, make_account):
    account = await make_account()
    response = await client.get("/api/tasks/", headers=_bearer(account.refresh_token))
    await _error(response, 401)


# --- me ---------------------------------------------------------------------------------------


async def test_me_returns_the_callers_profile(client, make_account):
    account = await make_account("admin")
    response = await client.get("/auth/me", headers=account.headers)
    assert response.status_code == 200
    data = (await response.get_json())["data"]
    assert data["id"] == account.id
    assert data["username"] == account.username
    assert data["email"] == account.email
    assert data["role"] == "admin"
    assert dt.datetime.fromisoformat(data["created_at"]).tzinfo is not None
    assert "password_hash" not in data


# --- every way a token can be wrong -----------------------------------------------------------


def _forge(app, without: tuple[str, ...] = (), **claims) -> str:
    """A token signed with the app's key, with these claims and without those named."""
    now = dt.datetime.now(dt.UTC)
    payload = {"iat": now, "nbf": now, "jti": "x", "type": "access", "fresh": False}
    payload["exp"] = now + dt.timedelta(hours=1)
    payload.update(claims)
    for name in without:
        del payload[name]
    return jwt.encode(payload, state_of(app).settings.jwt_secret_key, algorithm="HS256")


async def test_missing_token(client):
    assert (await _error(await client.get("/auth/me"), 401))["code"] == "token_missing"


@pytest.mark.parametrize("header", ["Token abc", "Bearer", "Bearer a b", "Basic dXNlcjpwYXNz"])
async def test_malformed_authorization_header(client, header):
    await _error(await client.get("/auth/me", headers={"Authorization": header}), 401)


async def test_expired_token(app, client, make_account):
    account = await make_account()
    past = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
    token = _forge(app, identity=account.id, iat=past, nbf=past, exp=past + dt.timedelta(hours=1))
    error = await _error(await client.get("/auth/me", headers=_bearer(token)), 401)
    assert error["code"] == "token_expired"


async def test_bad_signature(client, make_account):
    account = await make_account()
    header, payload, signature = account.access_token.split(".")
    tampered = f"{header}.{payload}.{signature[::-1]}"
    await _error(await client.get("/auth/me", headers=_bearer(tampered)), 401)


async def test_token_signed_with_another_secret(client, make_account):
    account = await make_account()
    token = jwt.encode(
        {"identity": account.id, "type": "access", "jti": "x", "exp": 2**40},
        "some-other-secret-some-other-secret",
        algorithm="HS256",
    )
    await _error(await client.get("/auth/me", headers=_bearer(token)), 401)


async def test_alg_none_token(client, make_account):
    account = await make_account()

    def b64(data: dict) -> str:
        return base64.urlsafe_b64encode(orjson.dumps(data)).rstrip(b"=").decode()

    token = (
        b64({"alg": "none", "typ": "JWT"})
        + "."
        + b64({"identity": account.id, "type": "access", "jti": "x", "exp": 2**40})
        + "."
    )
    await _error(await client.get("/auth/me", headers=_bearer(token)), 401)


@pytest.mark.parametrize("identity", ["1", None, 1.5, True])
async def test_token_with_a_non_integer_identity(app, client, identity):
    token = _forge(app, identity=identity)
    await _error(await client.get("/auth/me", headers=_bearer(token)), 401)


@pytest.mark.parametrize("identity", [0, -1, 2**31, 2**70])
async def test_token_with_an_identity_no_account_can_have(app, client, identity):
    """Ids are 32-bit and positive: a signed identity outside them is 401, never a 500 from
    the database (write routes included)."""
    token = _forge(app, identity=identity)
    for method, path in (("get", "/auth/me"), ("get", "/api/tasks/"), ("post", "/api/tasks/")):
        response = await getattr(client, method)(path, headers=_bearer(token), json={"title": "t"})
        assert (await _error(response, 401))["code"] == "token_invalid", (method, path)


async def test_token_without_a_type_claim_is_not_an_access_token(app, client, make_account):
    """A signed token that does not say `"type": "access"` is not taken for one (the library
    would: it fills in the type)."""
    account = await make_account()
    claims = _claims_of(app, account.access_token)
    accepted = _forge(app, identity=account.id, gen=claims["gen"])
    assert (await client.get("/auth/me", headers=_bearer(accepted))).status_code == 200
    token = _forge(app, without=("type",), identity=account.id, gen=claims["gen"])
    error = await _error(await client.get("/auth/me", headers=_bearer(token)), 401)
    assert error["code"] == "token_invalid"


@pytest.mark.parametrize("kind", ["", "ACCESS", 1, None])
async def test_token_with_another_type_is_not_an_access_token(app, client, make_account, kind):
    account = await make_account()
    generation = _claims_of(app, account.access_token)["gen"]
    token = _forge(app, identity=account.id, gen=generation, type=kind)
    await _error(await client.get("/auth/me", headers=_bearer(token)), 401)


def _claims_of(app, token: str) -> dict:
    return jwt.decode(token, state_of(app).settings.jwt_secret_key, algorithms=["HS256"])


async def test_token_of_a_deleted_user(app, client, make_account):
    account = await make_account()
    async with session_on(state_of(app).db) as session:
        await session.execute(delete(User).where(User.id == account.id))
        await session.commit()
    for path in ("/auth/me", "/api/tasks/"):
        await _error(await client.get(path, headers=account.headers), 401)
    await _error(await client.post("/auth/refresh", headers=_bearer(account.refresh_token)), 401)


async def test_token_of_another_generation_of_the_account(app, client, make_account):
    """A token carries the account's generation; a token of any other one is refused."""
    account = await make_account()
    claims = jwt.decode(
        account.access_token, state_of(app).settings.jwt_secret_key, algorithms=["HS256"]
    )
    other = _forge(app, identity=account.id, gen=claims["gen"] + 1)
    error = await _error(await client.get("/auth/me", headers=_bearer(other)), 401)
    assert error["code"] == "token_invalid"


@pytest.mark.parametrize("generation", ["1", 1.5, True, None])
async def test_token_with_a_non_integer_generation(app, client, make_account, generation):
    account = await make_account()
    token = _forge(app, identity=account.id, gen=generation)
    await _error(await client.get("/auth/me", headers=_bearer(token)), 401)


async def test_the_login_access_token_names_its_refresh_token(app, client, make_account):
    account = await make_account()
    login = await client.post(
        "/auth/login", json={"username": account.username, "password": account.password}
    )
    tokens = await login.get_json()
    access = _claims_of(app, tokens["access_token"])
    refresh = _claims_of(app, tokens["refresh_token"])
    assert (access["rjti"], access["rexp"]) == (refresh["jti"], refresh["exp"])
    assert "rjti" not in refresh


@pytest.mark.parametrize(
    "claims",
    [{"rjti": 5, "rexp": 2**40}, {"rjti": "r"}, {"rexp": 2**40}, {"rjti": "r", "rexp": "soon"}],
)
async def test_token_with_a_malformed_refresh_reference(app, client, make_account, claims):
    account = await make_account()
    generation = _claims_of(app, account.access_token)["gen"]
    token = _forge(app, identity=account.id, gen=generation, **claims)
    error = await _error(await client.get("/auth/me", headers=_bearer(token)), 401)
    assert error["code"] == "token_invalid"


async def test_a_token_without_generation_passes_only_for_an_account_from_before(
    app, client, make_account
):
    """Tokens and accounts from before the claim both count as generation 0."""
    old, new = await make_account(), await make_account()
    async with state_of(app).db.engine.begin() as connection:
        await connection.execute(
            text("UPDATE users SET token_generation = 0 WHERE id = :id"), {"id": old.id}
        )
    before = _forge(app, identity=old.id)
    assert (await client.get("/auth/me", headers=_bearer(before))).status_code == 200
    forged = _forge(app, identity=new.id)
    await _error(await client.get("/auth/me", headers=_bearer(forged)), 401)


async def test_role_comes_from_the_database_not_the_token(app, client, make_account):
    """A demoted admin loses admin rights at once, whatever the token's role claim says."""
    admin, other = await make_account("admin"), await make_account("user")
    async with session_on(state_of(app).db) as session:
        task_owner = await session.get(User, other.id)
        assert task_owner is not None
    created = await client.post("/api/tasks/", headers=other.headers, json={"title": "mine"})
    task_id = (await created.get_json())["data"]["id"]
    async with session_on(state_of(app).db) as session:
        user = await session.get(User, admin.id)
        assert user is not None
        user.role = "user"
        await session.commit()
    response = await client.get(f"/api/tasks/{task_id}", headers=admin.headers)
    assert response.status_code == 403


# --- one account per name and address, whatever the case; no common passwords -----------------


@pytest.mark.parametrize(
    "variant",
    [
        {"username": "NewUser", "email": "other@example.com"},
        {"username": "NEWUSER", "email": "other@example.com"},
        {"username": "otheruser", "email": "NEW@example.com"},
        {"username": "otheruser", "email": "new@EXAMPLE.COM"},
    ],
)
async def test_register_a_case_variant_of_a_taken_name_or_address_is_409(client, variant):
    assert (await client.post("/auth/register", json=NEW_USER)).status_code == 201
    response = await client.post("/auth/register", json={**NEW_USER, **variant})
    assert (await _error(response, 409))["code"] == "conflict"


# Look-alikes: U+0130 (capital I with dot above) folds to "i" plus a combining dot above, which
# is not "i"; PostgreSQL's lower() turned it into "i", SQLite's left every non-ASCII letter alone.
DOTTED_I = "\N{LATIN CAPITAL LETTER I WITH DOT ABOVE}"
SAME_ADDRESS = [  # (taken, variant): the same canonical address
    ("user@example.org", fullwidth("u") + "ser@example.org"),
    (fullwidth("u") + "ser@example.org", "user@example.org"),
    ("Ümlaut@x.org", "ümlaut@x.org"),
    ("ümlaut@x.org", "ÜMLAUT@x.org"),
    ("Straße@x.org", "strasse@x.org"),
]
OTHER_ADDRESS = [  # (taken, other): distinct canonical addresses, on both databases
    ("info@x.org", DOTTED_I + "nfo@x.org"),
    (DOTTED_I + "nfo@x.org", "info@x.org"),
    ("umlaut@x.org", "ümlaut@x.org"),
]


async def _register(client, username: str, email: str) -> int:
    response = await client.post(
        "/auth/register", json={**NEW_USER, "username": username, "email": email}
    )
    return response.status_code


@pytest.mark.parametrize(("taken", "variant"), SAME_ADDRESS)
async def test_register_an_address_with_a_taken_canonical_form_is_409(client, taken, variant):
    assert await _register(client, "first", taken) == 201
    assert await _register(client, "second", variant) == 409


@pytest.mark.parametrize(("taken", "other"), OTHER_ADDRESS)
async def test_register_an_address_with_another_canonical_form_is_201(client, taken, other):
    assert await _register(client, "first", taken) == 201
    assert await _register(client, "second", other) == 201


async def _register_user(app, username: str, email: str) -> str:
    """Through the service, as `taskapi create-user` does (the HTTP schema allows only ASCII
    usernames): "created" or the error's message."""
    state = state_of(app)
    try:
        async with state.db.connection() as connection:
            await register_user(
                connection, state.passwords, username=username, email=email, password=PASSWORD
            )
    except APIError as error:
        return f"{error.status} {error.message}"
    return "created"


@pytest.mark.parametrize(
    ("taken", "variant", "outcome"),
    [
        ("user", fullwidth("user"), "409 Username or email already exists"),
        ("Ümlaut", "ümlaut", "409 Username or email already exists"),
        ("straße", "STRASSE", "409 Username or email already exists"),
        ("info", DOTTED_I + "nfo", "created"),
        ("alice", "al" + DOTTED_I + "ce", "created"),
        ("umlaut", "ümlaut", "created"),
    ],
)
async def test_usernames_are_taken_by_their_canonical_form(app, clean_db, taken, variant, outcome):
    assert await _register_user(app, taken, "first@example.org") == "created"
    assert await _register_user(app, variant, "second@example.org") == outcome


@pytest.mark.parametrize(
    "variant",
    [
        {"username": "ALICE", "email": "bob@example.com"},
        {"username": fullwidth("alice"), "email": "bob@example.com"},
        {"username": "bob", "email": "ALICE@example.com"},
        {"username": "bob", "email": fullwidth("alice") + "@example.com"},
    ],
)
async def test_the_database_refuses_a_canonical_duplicate_that_skipped_the_check(
    app, clean_db, variant
):
    """What decides a race between two registrations: the unique indexes on the canonical
    columns."""
    insert = text(
        "INSERT INTO users (username, username_canonical, email, email_canonical, password_hash) "
        "VALUES (:username, :username_canonical, :email, :email_canonical, 'x')"
    )

    def row(username: str, email: str) -> dict[str, str]:
        return {
            "username": username,
            "username_canonical": canonical(username),
            "email": email,
            "email_canonical": canonical(email),
        }

    async with state_of(app).db.engine.connect() as connection:
        await connection.execute(insert, row("alice", "alice@example.com"))
        with pytest.raises(IntegrityError):
            await connection.execute(insert, row(**variant))
        await connection.rollback()


async def test_register_keeps_the_local_part_and_lowercases_the_domain(app, clean_db):
    state = state_of(app)
    async with session_on(state.db) as session:
        user = await register_user(
            session,
            state.passwords,
            username="mixed",
            email="Mixed.Case@Example.COM",
            password="a-long-password",
        )
    assert user.email == "Mixed.Case@example.com"


@pytest.mark.parametrize(
    ("registered", "typed", "status"),
    [
        ("CaseUser", "caseuser", 200),
        ("CaseUser", "CASEUSER", 200),
        ("CaseUser", "CaseUser", 200),
        ("alice", fullwidth("alice"), 200),
        ("alice", fullwidth("ALICE"), 200),
        ("alice", "al" + DOTTED_I + "ce", 401),
        ("alice", "al\N{LATIN SMALL LETTER DOTLESS I}ce", 401),
        ("Ümlaut", "ümlaut", 200),
        ("Ümlaut", "ÜMLAUT", 200),
        ("Ümlaut", "umlaut", 401),
    ],
)
async def test_login_matches_exactly_the_names_with_the_same_canonical_form(
    client, make_account, registered, typed, status
):
    account = await make_account(username=registered)
    response = await client.post("/auth/login", json={"username": typed, "password": PASSWORD})
    assert response.status_code == status, await response.get_data(as_text=True)
    if status == 200:
        token = (await response.get_json())["access_token"]
        me = await client.get("/auth/me", headers=_bearer(token))
        assert (await me.get_json())["data"]["id"] == account.id
        assert (await me.get_json())["data"]["username"] == registered  # shown as given


@pytest.mark.parametrize("password", ["password", "PASSWORD", "12345678", "iloveyou", "qwertyuiop"])
async def test_register_refuses_a_common_password(client, password):
    response = await client.post("/auth/register", json={**NEW_USER, "password": password})
    error = await _error(response, 400)
    assert error["code"] == "bad_request"
    assert list(error["details"]) == ["password"]
    assert "common" in error["details"]["password"][0]


def test_the_suites_passwords_are_not_common():
    for password in (PASSWORD, NEW_USER["password"]):
        RegisterRequest(username="someone", email="someone@example.com", password=password)
