"""Account endpoints: JWT tokens (for mobile and API clients) and the current user."""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView


class MeApi(APIView):
    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        username = serializers.CharField()
        display_name = serializers.CharField()
        role = serializers.CharField()
        hospital = serializers.CharField(source="hospital.code", allow_null=True, default=None)

    @extend_schema(responses=OutputSerializer, summary="The signed-in user")
    def get(self, request):
        return Response(self.OutputSerializer(request.user).data)
