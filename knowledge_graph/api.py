"""REST API of the knowledge-graph assistant (mounted at /api/kg/): thin views over services and selectors."""

from __future__ import annotations

from django.utils.translation import get_language
from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_serializer, inline_serializer
from rest_framework import serializers, status
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from portal.api_errors import ServiceError
from portal.permissions import IsClinician

from . import selectors, services
from .display import question_type_name
from .models import EntityLabel
from .selectors import BROWSABLE_LABELS


class _EntitySerializer(serializers.Serializer):
    name = serializers.CharField()
    label = serializers.CharField()
    text = serializers.CharField(help_text="Words of the question that named it (empty when from the previous turn).")
    via = serializers.ChoiceField(choices=["exact", "synonym", "edit_distance", "context"])


class _FactSerializer(serializers.Serializer):
    subject = serializers.CharField()
    relation = serializers.CharField()
    object = serializers.CharField()


# How a word of the question was corrected to an entity name.
CORRECTION_KINDS = ["synonym", "edit_distance"]


class _CorrectionSerializer(serializers.Serializer):
    original = serializers.CharField()
    corrected = serializers.CharField()
    kind = serializers.ChoiceField(choices=CORRECTION_KINDS)


class AnswerOutputSerializer(serializers.Serializer):
    conversation_id = serializers.UUIDField()
    question = serializers.CharField()
    question_type = serializers.CharField(allow_null=True)
    question_type_zh = serializers.CharField(help_text="The main question type's name in Chinese (kept for old clients).")
    question_type_text = serializers.CharField(help_text="The main question type's name in the request's language.")
    language = serializers.ChoiceField(choices=["zh-hans", "en"], help_text="The language of the answer's sentences.")
    question_types = serializers.ListField(child=serializers.CharField())
    entities = _EntitySerializer(many=True)
    text = serializers.CharField()
    facts = _FactSerializer(many=True)
    corrections = _CorrectionSerializer(many=True)
    red_flags = serializers.ListField(child=serializers.CharField())
    suggestions = serializers.ListField(
        child=serializers.CharField(), help_text="Questions to ask next, in Chinese (questions are read in Chinese)."
    )
    suggestion_glosses = serializers.ListField(
        child=serializers.CharField(), help_text="What each suggestion asks, in the answer's language."
    )
    answered = serializers.BooleanField()
    understood = serializers.BooleanField(
        help_text="False when the question named nothing the graph knows and asked nothing recognisable; "
        "the text then says so and offers example questions (the previous turn's entity is never reused)."
    )
    safety_notice = serializers.CharField()
    elapsed_ms = serializers.FloatField()


class AskApi(APIView):
    """Ask a medical question in Chinese; the answer is in the request's language (Accept-Language, the
    language cookie), graph names as stored. Follow-ups in the same conversation keep its context."""

    permission_classes = [IsAuthenticated]

    @extend_schema_serializer(component_name="KgAskInput")
    class InputSerializer(serializers.Serializer):
        question = serializers.CharField(max_length=services.MAX_QUESTION_CHARS, trim_whitespace=True)
        conversation_id = serializers.UUIDField(required=False, allow_null=True)

    @extend_schema(
        request=InputSerializer,
        responses={200: AnswerOutputSerializer},
        summary="Answer a medical question from the knowledge graph",
        description=(
            "Send `conversation_id` from a previous answer to ask a follow-up (`那它吃什么药？`). The answer is "
            "health information from the knowledge graph, not a diagnosis."
        ),
    )
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        conversation, answer = services.conversation_ask(
            user=request.user,
            question=data.validated_data["question"],
            conversation_id=data.validated_data.get("conversation_id"),
            language=get_language(),
        )
        payload = answer.as_dict()
        payload["conversation_id"] = conversation.id
        payload["question_type_text"] = question_type_name(answer.question_type) if answer.question_type else ""
        return Response(AnswerOutputSerializer(payload).data)


class EntitySearchApi(APIView):
    """Find graph entities by name."""

    permission_classes = [IsAuthenticated]

    @extend_schema_serializer(component_name="KgEntitySearchResult")
    class OutputSerializer(serializers.Serializer):
        label = serializers.CharField()
        label_zh = serializers.CharField()
        label_text = serializers.CharField(help_text="The type's name in the request's language.")
        name = serializers.CharField()

    @extend_schema(
        parameters=[OpenApiParameter("q", str, required=True, description="Part of an entity name")],
        responses={200: OutputSerializer(many=True)},
        summary="Search entities by name",
    )
    def get(self, request):
        text = request.query_params.get("q", "")
        if not text.strip():
            raise ServiceError(_("Give part of a name in the q parameter."), code="invalid_input")
        if len(text) > selectors.MAX_NAME_CHARS:
            raise ServiceError(_("The search text is too long."), code="invalid_input")
        return Response(self.OutputSerializer(selectors.entity_search(text=text), many=True).data)


class EntityDetailApi(APIView):
    """One entity with its properties and neighbours."""

    permission_classes = [IsAuthenticated]

    @extend_schema_serializer(component_name="KgEntityDetail")
    class OutputSerializer(serializers.Serializer):
        label = serializers.CharField()
        label_zh = serializers.CharField()
        label_text = serializers.CharField(help_text="The type's name in the request's language.")
        name = serializers.CharField()
        properties = serializers.ListField(child=serializers.DictField())
        groups = serializers.ListField(child=serializers.DictField())
        synonyms = serializers.ListField(child=serializers.CharField())

    @extend_schema(responses={200: OutputSerializer}, summary="Show an entity and its neighbours")
    def get(self, request, label: str, name: str):
        if label not in BROWSABLE_LABELS:
            raise ServiceError(_("Unknown entity type %(label)r."),
                               params={"label": label}, code="not_found", status_code=404)
        detail = selectors.entity_detail(label=label, name=name)
        if detail is None:
            raise ServiceError(_("No such entity."), code="not_found", status_code=404)
        return Response(self.OutputSerializer(detail).data)


class EntityPanelApi(APIView):
    """What the side panel shows for an entity linked from a report, a study or a patient's page."""

    permission_classes = [IsAuthenticated]

    @extend_schema_serializer(component_name="KgEntityPanel")
    class OutputSerializer(serializers.Serializer):
        label = serializers.CharField()
        label_text = serializers.CharField(help_text="The type's name in the request's language.")
        name = serializers.CharField()
        description = serializers.CharField(allow_blank=True)
        checks = serializers.ListField(child=serializers.CharField())
        departments = serializers.ListField(child=serializers.CharField())
        related_diseases = serializers.ListField(child=serializers.CharField())
        sections_text = serializers.DictField(child=serializers.CharField(),
                                              help_text="Section titles in the request's language.")
        lay_text = serializers.CharField(required=False, allow_blank=True,
                                         help_text="Plain-language wording for patients (with lay=1).")
        lay_source = serializers.ChoiceField(choices=["stored", "description", ""], required=False)

    @extend_schema(
        parameters=[OpenApiParameter("lay", bool, description="Add the plain-language wording for patients.")],
        responses={200: OutputSerializer}, summary="Show an entity's side panel",
    )
    def get(self, request, label: str, name: str):
        if label not in BROWSABLE_LABELS:
            raise ServiceError(_("Unknown entity type %(label)r."),
                               params={"label": label}, code="not_found", status_code=404)
        lay = request.query_params.get("lay", "") in ("1", "true", "yes")
        panel = selectors.entity_panel(label=label, name=name, lay=lay)
        if panel is None:
            raise ServiceError(_("No such entity."), code="not_found", status_code=404)
        return Response(self.OutputSerializer(panel).data)


class EntityMentionsApi(APIView):
    """Find the graph's entities named in texts (report impressions, finding kinds), for linking."""

    permission_classes = [IsAuthenticated]

    class InputSerializer(serializers.Serializer):
        texts = serializers.ListField(
            child=serializers.CharField(allow_blank=True, max_length=services.MAX_MENTION_TEXT_CHARS,
                                        trim_whitespace=False),
            max_length=50, allow_empty=False,
        )

    @extend_schema_serializer(component_name="KgMentions")
    class OutputSerializer(serializers.Serializer):
        results = serializers.ListField(
            child=serializers.ListField(child=serializers.DictField()),
            help_text="One list per input text: {start, end, text, label, name}, in text order.",
        )

    @extend_schema(request=InputSerializer, responses={200: OutputSerializer}, summary="Find entity mentions",
                   operation_id="kg_mentions_find")
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        results = [services.entity_mentions(text) for text in data.validated_data["texts"]]
        return Response({"results": results})


class SynonymOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    alias = serializers.CharField()
    canonical = serializers.CharField()
    label = serializers.CharField()
    created_by = serializers.CharField(source="created_by.username", default=None)
    created_at = serializers.DateTimeField()


class SynonymListApi(APIView):
    """Staff-added synonyms (every signed-in user may read them)."""

    permission_classes = [IsAuthenticated]

    @extend_schema(responses={200: SynonymOutputSerializer(many=True)}, summary="List synonyms")
    def get(self, request):
        return Response(SynonymOutputSerializer(selectors.synonym_list(), many=True).data)


class SynonymCreateApi(APIView):
    """Add a synonym for an entity (doctors, hospital and platform administrators)."""

    permission_classes = [IsClinician]

    @extend_schema_serializer(component_name="KgSynonymCreateInput")
    class InputSerializer(serializers.Serializer):
        alias = serializers.CharField(max_length=64)
        canonical = serializers.CharField(max_length=200)
        label = serializers.ChoiceField(choices=EntityLabel.choices)

    @extend_schema(
        request=InputSerializer,
        responses={
            201: SynonymOutputSerializer,
            400: inline_serializer("SynonymError", {"error": serializers.DictField()}),
        },
        summary="Add a synonym",
    )
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        synonym = services.synonym_create(actor=request.user, **data.validated_data)
        return Response(SynonymOutputSerializer(synonym).data, status=status.HTTP_201_CREATED)
