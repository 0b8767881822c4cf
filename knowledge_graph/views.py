"""Pages: ask a question, search and browse entities with their neighbours, add synonyms."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import get_language, gettext, pgettext
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_POST
from django.utils.translation import gettext_lazy as _

from portal.permissions import is_clinician

from . import selectors, services
from .display import label_name, question_type_name
from .graph import GraphError
from .models import EntityLabel, QuestionLog
from .qa.phrases import EN, examples, language_of

SESSION_CONTEXT = "kg_context"
SESSION_HISTORY = "kg_history"
HISTORY_TURNS = 20


class AskForm(forms.Form):
    question = forms.CharField(max_length=services.MAX_QUESTION_CHARS, label=_("Question"))


class SynonymForm(forms.Form):
    alias = forms.CharField(max_length=64, label=_("Synonym"))
    canonical = forms.CharField(max_length=200, widget=forms.HiddenInput)
    label = forms.ChoiceField(choices=EntityLabel.choices, widget=forms.HiddenInput)


def can_add_synonyms(user) -> bool:
    return is_clinician(user)


def _turn(answer) -> dict:
    """Return what the page keeps of one answered turn (codes, not display names: JSON in the session)."""
    return {
        "question": answer.question,
        "lines": answer.text.split("\n"),
        "entities": [{"name": e.name, "label": str(e.label)} for e in answer.entities],
        "question_types": [str(t) for t in answer.question_types],
        "understood": answer.understood,
    }


def _shown(turn: dict) -> dict:
    """Return a stored turn with the names users see in place of the graph's codes."""
    return {
        **turn,
        "entities": [{**e, "label_text": label_name(e["label"])} for e in turn.get("entities", [])],
        "question_types_text": pgettext("list separator", ", ").join(
            question_type_name(t) for t in turn.get("question_types", [])
        ),
    }


@login_required
def index(request):
    """Ask questions; the page shows the whole conversation (kept in the user's session only)."""
    form = AskForm(request.POST or None)
    if request.method == "POST" and request.POST.get("reset"):
        request.session.pop(SESSION_CONTEXT, None)
        request.session.pop(SESSION_HISTORY, None)
        return redirect("knowledge_graph:index")
    if request.method == "POST" and form.is_valid():
        try:
            answer = services.kg_answer(
                form.cleaned_data["question"],
                context=request.session.get(SESSION_CONTEXT),
                channel=QuestionLog.Channel.WEB,
                language=get_language(),
            )
        except GraphError:
            messages.error(request, gettext("The knowledge graph cannot be reached just now; please try again later."))
        else:
            request.session[SESSION_CONTEXT] = answer.context
            history = list(request.session.get(SESSION_HISTORY) or [])[-(HISTORY_TURNS - 1) :]
            request.session[SESSION_HISTORY] = [*history, _turn(answer)]
            form = AskForm()
    history = [_shown(turn) for turn in request.session.get(SESSION_HISTORY) or []]
    language = language_of(get_language())
    return render(
        request,
        "knowledge_graph/index.html",
        {
            "form": form,
            "history": history,
            # Questions are read in Chinese; an English page glosses each example in English.
            "examples": [
                {"question": question, "gloss": gloss if language == EN else ""}
                for question, gloss in examples(language, follow_up=True)
            ],
            "context": request.session.get(SESSION_CONTEXT) or {},
        },
    )


@login_required
def search(request):
    text = request.GET.get("q", "")
    results = selectors.entity_search(text=text) if text.strip() else []
    return render(request, "knowledge_graph/search.html", {"q": text, "results": results})


@login_required
def entity(request, label: str, name: str):
    detail = selectors.entity_detail(label=label, name=name)
    if detail is None:
        raise Http404("No such entity.")
    form = SynonymForm(initial={"canonical": name, "label": label}) if can_add_synonyms(request.user) else None
    return render(request, "knowledge_graph/entity.html", {"entity": detail, "synonym_form": form})


@login_required
@require_POST
def synonym_add(request):
    if not can_add_synonyms(request.user):
        raise PermissionDenied(_("Only doctors and administrators add synonyms."))
    form = SynonymForm(request.POST)
    if not form.is_valid():
        raise Http404("Invalid synonym form.")
    data = form.cleaned_data
    try:
        services.synonym_create(
            actor=request.user, alias=data["alias"], canonical=data["canonical"], label=data["label"]
        )
    except ValidationError as exc:
        messages.error(request, "；".join(exc.messages))
    else:
        messages.info(request, gettext("Synonym “%(alias)s” added.") % {"alias": data["alias"]})
    return redirect(reverse("knowledge_graph:entity", args=[data["label"], data["canonical"]]))
