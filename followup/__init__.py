"""Follow-up (医疗随访): doctor–patient chat, follow-up plans, questionnaires and patient pages."""
