"""Account endpoints: JWT tokens (for mobile and API clients) and the current user."""

from django.conf import settings
from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView
from rest_framework_simplejwt.views import TokenObtainPairView, TokenRefreshView

from .api_errors import ServiceError


class AuthRateThrottle(ScopedRateThrottle):
    """Scoped throttle that reads its rate from settings at request time (DRF binds it at import)."""

    def get_rate(self):
        return settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"][self.scope]


class TokenObtainApi(TokenObtainPairView):
    """Exchange a user name and password for a JWT pair; failures count toward django-axes' lock-out."""

    throttle_classes = [AuthRateThrottle]
    throttle_scope = "auth"

    def post(self, request, *args, **kwargs):
        try:
            return super().post(request, *args, **kwargs)
        except AuthenticationFailed:
            # AxesStandaloneBackend flags the request it was given (this DRF request) when it refused.
            if getattr(request, "axes_locked_out", False):
                raise ServiceError(
                    _("Too many failed logins: this account is locked for a while."),
                    code="account_locked", status_code=429,
                ) from None
            raise


class TokenRefreshApi(TokenRefreshView):
    """Exchange a refresh token for a new pair; the old refresh token is blacklisted."""

    throttle_classes = [AuthRateThrottle]
    throttle_scope = "auth"


class MeApi(APIView):
    @extend_schema_serializer(component_name="CurrentUser")
    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        username = serializers.CharField()
        display_name = serializers.CharField()
        role = serializers.CharField()
        hospital = serializers.CharField(source="hospital.code", allow_null=True, default=None)

    @extend_schema(responses=OutputSerializer, summary="The signed-in user")
    def get(self, request):
        return Response(self.OutputSerializer(request.user).data)
