"""The pages speak English and French. Templates write English and wrap every sentence
in ``_()``; ``FRENCH`` gives each its French (a test checks none is missing). The
language is the ``hdh_lang`` cookie's (set from the switch in every page's header),
else the browser's first choice among the two, else French: the people who run the
hub work in French."""

from __future__ import annotations

from collections.abc import Callable

LANGUAGES = ("fr", "en")
DEFAULT = "fr"

FRENCH: dict[str, str] = {
    # Frame and navigation
    "Skip to content": "Aller au contenu",
    "Catalogue": "Catalogue",
    "Projects": "Projets",
    "Airlock": "Sas de sortie",
    "Migrations": "Migrations",
    "Audit": "Audit",
    "Locations": "Emplacements",
    "Sign out": "Se déconnecter",
    "Signed in as": "Connecté en tant que",
    "Language": "Langue",
    "Main": "Principal",
    "Previous page": "Page précédente",
    "Next page": "Page suivante",
    "Nothing here yet.": "Rien pour l'instant.",
    "Error": "Erreur",
    "What to do": "Que faire",
    "Back to the catalogue": "Retour au catalogue",
    "Refresh": "Actualiser",
    "Sovereign health data hub": "Plateforme souveraine de données de santé",
    # Sign-in
    "Sign in": "Se connecter",
    "Name": "Nom",
    "Password": "Mot de passe",
    "Sign-ins are recorded in the audit log.": (
        "Les connexions sont enregistrées dans le journal d'audit."
    ),
    # Catalogue
    "Search the catalogue": "Rechercher dans le catalogue",
    "Words to find": "Mots à chercher",
    "Search": "Rechercher",
    "Datasets": "Jeux de données",
    "Dataset": "Jeu de données",
    "Results for": "Résultats pour",
    "No dataset, schema or nomenclature matches every word.": (
        "Aucun jeu de données, schéma ni nomenclature ne contient tous ces mots."
    ),
    "Kind": "Type",
    "Matched in": "Trouvé dans",
    "Latest version": "Dernière version",
    "Versions": "Versions",
    "Description": "Description",
    "Producer": "Producteur",
    "Update frequency": "Fréquence de mise à jour",
    "Legal basis": "Base légale",
    "Sensitivity": "Sensibilité",
    "Collection": "Collection",
    "Keywords": "Mots-clés",
    "Schema": "Schéma",
    "Version": "Version",
    "Rows": "Lignes",
    "Source file": "Fichier source",
    "Location": "Emplacement",
    "Created": "Créé",
    "Columns": "Colonnes",
    "Column": "Colonne",
    "Type": "Type",
    "Rule at the door": "Règle à l'entrée",
    "Profile": "Profil",
    "Empty values": "Valeurs vides",
    "Distinct values": "Valeurs distinctes",
    "Range": "Étendue",
    "Most frequent values": "Valeurs les plus fréquentes",
    "Distribution": "Distribution",
    "suppressed": "masqué",
    "Counts under {threshold} are suppressed: the catalogue is seen by people without a permit.": (
        "Les effectifs inférieurs à {threshold} sont masqués : le catalogue est vu par des "
        "personnes sans autorisation."
    ),
    "Nomenclatures": "Nomenclatures",
    "Variables of the schema": "Variables du schéma",
    "Nomenclature": "Nomenclature",
    "Values as a table": "Valeurs sous forme de tableau",
    "From": "De",
    "To": "À",
    "Count": "Effectif",
    "Value": "Valeur",
    "and {n} rarer values": "et {n} valeurs plus rares",
    # Projects
    "Project": "Projet",
    "Title": "Titre",
    "Status": "Statut",
    "Lead": "Responsable",
    "Members": "Membres",
    "Add the member": "Ajouter le membre",
    "Remove": "Retirer",
    "Role": "Rôle",
    "Purpose": "Finalité",
    "Approval reference": "Référence d'autorisation",
    "Period": "Période",
    "New project": "Nouveau projet",
    "Short name": "Nom court",
    "Create the project": "Créer le projet",
    "History": "Historique",
    "When": "Quand",
    "Who": "Qui",
    "What": "Quoi",
    "Note": "Note",
    "Move the project": "Faire avancer le projet",
    "Action": "Action",
    "Apply": "Appliquer",
    "Permits": "Autorisations",
    "Columns allowed": "Colonnes autorisées",
    "Row filter": "Filtre de lignes",
    "Valid until": "Valable jusqu'au",
    "Requested by": "Demandé par",
    "Decided by": "Décidé par",
    "Request a permit": "Demander une autorisation",
    "Columns, separated by commas": "Colonnes, séparées par des virgules",
    "Until (YYYY-MM-DD, optional)": "Jusqu'au (AAAA-MM-JJ, facultatif)",
    "Send the request": "Envoyer la demande",
    "Decide": "Décider",
    "Grant": "Accorder",
    "Refuse": "Refuser",
    "Revoke": "Révoquer",
    "Workspace": "Espace de travail",
    "Open the workspace": "Ouvrir l'espace de travail",
    # Workspace
    "SQL query": "Requête SQL",
    "Run": "Exécuter",
    "Keep the whole result as a saved table named (optional)": (
        "Garder le résultat entier comme table enregistrée nommée (facultatif)"
    ),
    "Rows {first} to {last}": "Lignes {first} à {last}",
    "{n} rows": "{n} lignes",
    "in {seconds} s": "en {seconds} s",
    "Datasets read": "Jeux de données lus",
    "The query gave no row.": "La requête n'a donné aucune ligne.",
    "Saved tables": "Tables enregistrées",
    "Jobs": "Traitements",
    "Job": "Traitement",
    "Submitted": "Soumis",
    "Exit": "Sortie",
    "Outputs": "Résultats",
    "Log": "Journal",
    "Submit a job": "Soumettre un traitement",
    "Script file name (.py or .sql)": "Nom du script (.py ou .sql)",
    "Script": "Script",
    "Submit": "Soumettre",
    "Ask for results to leave": "Demander la sortie de résultats",
    "Files": "Fichiers",
    "Send to the airlock": "Envoyer au sas",
    "No output yet: outputs of finished jobs appear here.": (
        "Pas encore de résultat : ceux des traitements terminés apparaissent ici."
    ),
    "The log is empty.": "Le journal est vide.",
    "This page refreshes until the job ends.": (
        "Cette page se met à jour jusqu'à la fin du traitement."
    ),
    # Airlock
    "Export requests": "Demandes de sortie",
    "Request": "Demande",
    "Requested": "Demandé",
    "All": "Toutes",
    "Show": "Afficher",
    "Checks": "Contrôles",
    "Verdict": "Verdict",
    "File": "Fichier",
    "Size": "Taille",
    "Flagged cells are marked and explained; hidden cells will leave blank.": (
        "Les cellules signalées sont marquées et expliquées ; les cellules masquées "
        "sortiront vides."
    ),
    "flagged": "signalée",
    "Flagged cells": "Cellules signalées",
    "Reason": "Motif",
    "Cell": "Cellule",
    "Differencing with earlier releases": "Différenciation avec des sorties antérieures",
    "Reviews": "Revues",
    "Decision": "Décision",
    "Comment": "Commentaire",
    "Record the decision": "Enregistrer la décision",
    "Approve": "Approuver",
    "Reject": "Rejeter",
    "Return to the researcher": "Renvoyer au chercheur",
    "Released": "Sorti",
    "Download": "Télécharger",
    "This file is not a table: the reviewers read it whole.": (
        "Ce fichier n'est pas un tableau : les relecteurs le lisent en entier."
    ),
    "Residual degrees of freedom": "Degrés de liberté résiduels",
    "leaves blank": "sort vide",
    "hidden to protect a flagged cell": "masquée pour protéger une cellule signalée",
    # Migrations
    "Migration": "Migration",
    "Source": "Source",
    "Target": "Cible",
    "Objects": "Objets",
    "Bytes": "Octets",
    "Waves": "Vagues",
    "Wave": "Vague",
    "Copied": "Copiés",
    "Progress": "Avancement",
    "Workers": "Processus de copie",
    "Throughput over time": "Débit au fil du temps",
    "MB/s": "Mo/s",
    "peak": "pointe",
    "States": "États",
    "Verification": "Vérification",
    "Verify the target now": "Vérifier la cible maintenant",
    "Every object is on the target with its SHA-256.": (
        "Chaque objet est sur la cible avec son SHA-256."
    ),
    "Report": "Rapport",
    "Make the report": "Établir le rapport",
    "Nothing to copy.": "Rien à copier.",
    "Signed summary": "Résumé signé",
    "Signature checked with the hub's public key.": (
        "Signature vérifiée avec la clé publique de la plateforme."
    ),
    "Cut over": "Basculé",
    "Estimated time": "Durée estimée",
    "Missing": "Manquants",
    "Extra": "En trop",
    "Mismatched": "Différents",
    "Policy": "Politique",
    "Nothing is copied yet.": "Rien n'est encore copié.",
    "This page refreshes while the migration runs.": (
        "Cette page se met à jour pendant la migration."
    ),
    "Area": "Zone",
    "SHA-256 matched": "SHA-256 concordants",
    "Retries": "Nouvelles tentatives",
    "Resumed, not sent again": "Repris, non renvoyé",
    "Problems": "Problèmes",
    "None": "Aucun",
    # Audit
    "Audit log": "Journal d'audit",
    "Actor": "Acteur",
    "Object": "Objet",
    "Outcome": "Résultat",
    "Filter": "Filtrer",
    "Any": "Tous",
    "Earlier events": "Événements antérieurs",
    "Verify the chain": "Vérifier la chaîne",
    "The chain is intact: {events} events, head {seq}.": (
        "La chaîne est intacte : {events} événements, tête {seq}."
    ),
    "The chain is broken at event {seq}: {message}": (
        "La chaîne est rompue à l'événement {seq} : {message}"
    ),
    "Details": "Détails",
    "Action (end with * for a prefix)": "Action (finir par * pour un préfixe)",
    "Object (TYPE or TYPE:ID)": "Objet (TYPE ou TYPE:ID)",
    "From (date or time, UTC)": "Depuis (date ou heure, UTC)",
    "Before (date or time, UTC)": "Avant (date ou heure, UTC)",
    # Locations
    "Storage locations": "Emplacements de stockage",
    "Provider": "Fournisseur",
    "Country": "Pays",
    "Certifications": "Certifications",
    "Exposure to laws outside the EU": "Exposition à des lois hors UE",
    "none": "aucune",
    "What the policy allows where": "Ce que la politique autorise et où",
    "Data class": "Classe de données",
    "Allowed": "Autorisé",
    "Refused": "Refusé",
    "Rules": "Règles",
}


#: The domain's state words (the codes the library, the API and the CLI use), as a
#: French reader reads them. English pages show the codes themselves.
STATES_FR: dict[str, str] = {
    # projects
    "draft": "brouillon", "submitted": "soumis", "approved": "approuvé", "active": "actif",
    "suspended": "suspendu", "closed": "clos", "archived": "archivé", "rejected": "rejeté",
    # permits
    "requested": "demandée", "granted": "accordée", "refused": "refusée",
    "revoked": "révoquée",
    # jobs
    "queued": "en attente", "running": "en cours", "succeeded": "réussi", "failed": "échoué",
    "timed_out": "délai dépassé",
    # airlock requests and verdicts
    "checked": "contrôlée", "returned": "renvoyée", "released": "sortie",
    "pass": "conforme", "suppressed": "masquages", "fail": "refus", "review": "à relire",
    # migrations and their waves
    "planned": "planifiée", "incomplete": "incomplète", "copied": "copiée",
    "partly cut over": "en partie basculée", "cut over": "basculée",
    "decommissioning": "source en suppression", "decommissioned": "source supprimée",
    "cancelled": "annulée", "pending": "à copier", "corrupt": "corrompu",
}  # fmt: skip


def choose(cookie: str | None, accept_language: str | None) -> str:
    """The language of a page: the cookie's, else the browser's first known, else French."""
    if cookie in LANGUAGES:
        return cookie
    ranked: list[tuple[float, int, str]] = []
    for i, part in enumerate((accept_language or "").split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        ranked.append((-quality, i, tag.strip().lower()[:2]))
    for _, _, tag in sorted(ranked):
        if tag in LANGUAGES:
            return tag
    return DEFAULT


def translator(language: str) -> Callable[..., str]:
    """``_("English {x}", x=1)`` in the chosen language."""

    def translate(text: str, **values: object) -> str:
        said = FRENCH.get(text, text) if language == "fr" else text
        return said.format(**values) if values else said

    return translate
