"""Request and response models of /auth."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, EmailStr, Field

from taskapi.domain.password_policy import refuse_common
from taskapi.http.validation import Text

# A JSON Web Token in its compact form: three base64url parts.
JWT_PATTERN = r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$"

Username = Annotated[str, Field(min_length=3, max_length=80, pattern=r"^[A-Za-z0-9_.-]+$")]
Password = Annotated[Text, Field(min_length=8, max_length=1024), AfterValidator(refuse_common)]


class RegisterRequest(BaseModel):
    """A new account. Any `role` sent is ignored: new users are always `user`."""

    model_config = ConfigDict(strict=True, extra="ignore")

    username: Username = Field(examples=["alice"])
    email: Annotated[EmailStr, Field(max_length=120)] = Field(examples=["alice@example.com"])
    password: Password = Field(examples=["correct horse battery"])


class LoginRequest(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")

    username: Annotated[Text, Field(min_length=1, max_length=80)] = Field(examples=["alice"])
    password: Annotated[Text, Field(min_length=1, max_length=1024)] = Field(
        examples=["correct horse battery"]
    )


class LogoutRequest(BaseModel):
    """Optional body of /auth/logout: a refresh token of the caller's to revoke as well."""

    model_config = ConfigDict(strict=True, extra="ignore")

    refresh_token: Annotated[str, Field(max_length=4096, pattern=JWT_PATTERN)] | None = None


class RegisterResponse(BaseModel):
    """Registered."""

    message: str = Field(examples=["User registered successfully"])
    user_id: int


class TokenPair(BaseModel):
    """Logged in: an access token (`expires_in` seconds) and a refresh token."""

    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="Lifetime of the access token in seconds.")


class AccessToken(BaseModel):
    """A new access token."""

    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int


class Profile(BaseModel):
    id: int
    username: str
    email: str
    role: Literal["user", "admin"]
    created_at: dt.datetime


class ProfileEnvelope(BaseModel):
    """The caller's account."""

    status: Literal["success"] = "success"
    data: Profile
